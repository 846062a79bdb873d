"""What the planner writes into while it walks the layers: resources in the making (`Draft`),
the wires between them, and what every cloud's part of the planner reads (the spec, the
placement, the names). `shared.plan.builder` turns them into a `Plan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.contracts import (
    DigitalTwinInfo,
    Function,
    Output,
    Setting,
    TwinUpdatePath,
    twin_update_path,
)
from shared.naming import AwsNaming, AzureNaming, GcpNaming
from shared.resources import ResourceConfig, UserCodeRef
from shared.resources.azure import FunctionAppConfig, FunctionRuntime, FunctionsSku, HostedFunction
from shared.spec import TwinSpec
from shared.validation import Problem, quote_value

if TYPE_CHECKING:
    from shared.bundle import BundleCode


@dataclass
class FunctionAppDraft:
    """A Function App's configuration while functions are added to it: an app is one resource
    (its settings are read-modify-written as a whole), so every function of its layer joins it."""

    resource_group: str
    location: str
    plan: str
    plan_sku: FunctionsSku
    runtime: FunctionRuntime
    identity: str
    storage_account: str
    app_settings: dict[str, str]
    functions: list[HostedFunction] = field(default_factory=list)
    processors: tuple[str, ...] = ()
    user_code: list[UserCodeRef] = field(default_factory=list)

    def build(self, name: str) -> FunctionAppConfig:
        # Sorted: the same functions and settings always give the same configuration.
        return FunctionAppConfig(
            name=name, resource_group=self.resource_group, location=self.location, plan=self.plan,
            plan_sku=self.plan_sku, runtime=self.runtime, identity=self.identity, storage_account=self.storage_account,
            functions=tuple(sorted(self.functions, key=lambda f: f.name)),
            app_settings=dict(sorted(self.app_settings.items())), processors=self.processors,
            user_code=tuple(sorted(self.user_code, key=lambda r: (r.kind, r.name))),
        )


@dataclass
class Draft:
    id: str
    layer: str
    provider: str
    kind: str
    name: str
    config: ResourceConfig | FunctionAppDraft
    needs: list[str] = field(default_factory=list)
    produces: list[str] = field(default_factory=list)

    def final_config(self) -> ResourceConfig:
        return self.config.build(self.name) if isinstance(self.config, FunctionAppDraft) else self.config


@dataclass(slots=True)
class Hosted:
    """One payload function to host, and what it needs from the cloud that runs it."""

    layer: str
    function: Function
    short: str | None = None
    """Resource id suffix on AWS/GCP, function name in an Azure app (default: the function)."""
    cloud_name: str | None = None
    """AWS: the Lambda's (and its role's) name when not `{twin}-{short}`."""
    environment: Mapping[Setting, str] = field(default_factory=dict)
    public_url: Output | None = None
    """The URL output of a function other clouds (or the same cloud's services) call."""
    produces: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    device_id: str | None = None
    """A per-device processor (AWS runs one Lambda per device)."""
    twin_update: TwinUpdatePath | None = None
    topic: str | None = None
    """GCP: the Pub/Sub topic that triggers it."""
    schedule: str | None = None
    """Azure: the NCRONTAB schedule of a timer function."""
    processors: tuple[str, ...] = ()
    """GCP: the device ids whose processing one processor runs."""
    user_function: str | None = None
    """A user's event action (`autoDeploy`): its function name in the spec."""
    path_to_code: str | None = None
    user_code: tuple[UserCodeRef, ...] = ()
    """The users' code its package carries (a device's processor, an event action's code)."""


class Drafts:
    """The resources and wires planned so far, and what planning reads."""

    def __init__(self, spec: TwinSpec, placement: Mapping[str, str], code: BundleCode | None = None) -> None:
        self.spec = spec
        self.code = code
        """The bundle's code (None: a plain spec, whose devices get the default processor)."""
        self.feedback: str | None = None
        """How event feedback reaches devices (`shared.wiring.feedback_path`): local, remote or None."""
        self.code_problems: list[Problem] = []
        """Why users' code cannot be deployed (missing or broken folders), with their paths."""
        self.twin = spec.twin.name
        self.placement = dict(placement)
        self.az = AzureNaming(self.twin)
        self.aws = AwsNaming(self.twin)
        self.gcp = GcpNaming(self.twin)
        self.drafts: dict[str, Draft] = {}
        self.wires: list[tuple[str, str, str]] = []  # (output, consumer, setting)
        self._wire_keys: set[tuple[str, str, str]] = set()
        self.notes: list[str] = []
        self.user_named: dict[str, str] = {}
        """Resource id -> spec path of the user-chosen name it carries (AWS event actions)."""
        self.info_json = DigitalTwinInfo(
            twin_name=self.twin,
            mode=spec.twin.mode,
            hot_storage_days=spec.twin.hot_storage_days,
            cold_storage_days=spec.twin.cold_storage_days,
            providers=self.placement,
        ).to_json()
        self.path = twin_update_path(self.placement["L1"], self.placement["L2"], self.placement["L4"])

    def add(
        self,
        provider: str,
        layer: str,
        short: str,
        kind: str,
        config: ResourceConfig | FunctionAppDraft,
        needs: Iterable[str] = (),
        produces: Iterable[str] = (),
        *,
        name: str | None = None,
    ) -> Draft:
        """Plan resource `{provider}/{layer}/{short}`; its cloud name is the config's `name`
        (a Function App's, still being drafted, is given as `name`)."""
        rid = f"{provider}/{layer}/{short}"
        if rid in self.drafts:
            raise RuntimeError(f"resource {rid} planned twice")
        cloud_name = name if name is not None else config.name if isinstance(config, ResourceConfig) else None
        if cloud_name is None:
            raise RuntimeError(f"resource {rid} has no name")
        draft = Draft(rid, layer, provider, kind, cloud_name, config, list(needs), [str(p) for p in produces])
        self.drafts[rid] = draft
        return draft

    def wire(self, output: str, consumer: str, setting: str) -> None:
        key = (str(output), consumer, str(setting))
        if key not in self._wire_keys:
            self._wire_keys.add(key)
            self.wires.append(key)

    def wire_token(self, consumer: str, receiver: bool) -> None:
        self.wire(Output.INTER_CLOUD_TOKEN, consumer, Setting.INTER_CLOUD_TOKEN)
        if receiver:
            # Receivers accept the previous token too, so a rotation rejects no in-flight call.
            self.wire(Output.INTER_CLOUD_TOKEN_PREVIOUS, consumer, Setting.INTER_CLOUD_TOKEN_PREVIOUS)

    def processor_code(self, device_id: str) -> UserCodeRef | None:
        """The device's own processor on the L2 cloud (or the bundle's default one), if any."""
        if self.code is None:
            return None
        ref, problems = self.code.processor(self.placement["L2"], device_id)
        self.code_problems.extend(p for p in problems if p not in self.code_problems)
        return ref

    def action_code(self, function_name: str, path_to_code: str | None, spec_path: str) -> UserCodeRef | None:
        """An `autoDeploy` event action's code from the bundle; a problem when it has none."""
        from shared.bundle import action_folder, quote_path

        folder = action_folder(self.placement["L2"], function_name, path_to_code)
        where = spec_path.rsplit(".", 1)[0] + ".pathToCode" if path_to_code is not None else spec_path
        if folder is None:
            self.code_problems.append(Problem(where, f"{quote_value(str(path_to_code))} is not a folder path inside "
                                                     "a bundle (relative, no '..')"))
            return None
        if self.code is None:
            self.code_problems.append(Problem(where, f"event action {quote_value(function_name)} has autoDeploy, so "
                                                     f"its code (folder {quote_path(folder)}) must come with the spec: "
                                                     "deploy the folder with its code, or send a bundle "
                                                     "(application/zip), or set autoDeploy to false"))
            return None
        ref, problems = self.code.action(self.placement["L2"], function_name, folder, where)
        self.code_problems.extend(problems)
        return ref

    def environment(self, hosted: Hosted) -> dict[str, str]:
        """A function's static environment: `DIGITAL_TWIN_INFO` and its own settings."""
        return {str(Setting.DIGITAL_TWIN_INFO): self.info_json, **{str(k): v for k, v in hosted.environment.items()}}
