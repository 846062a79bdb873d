"""`build_plan(spec)`: walks the layers and decides what the twin needs, whichever clouds host
them: the receivers where a boundary crosses clouds, which function calls which, which output
feeds which setting (the wires), and the twin-update path. How one cloud realises each piece is
that cloud's planner (`aws.py`, `azure.py`, `gcp.py`).

Boundary rules: a receiver runs in L0 of the receiving cloud only when the sending layer is on
another cloud (`shared.wiring`). Twin updates when L4 is Azure are pushed exactly once per
reading: by the `adt-updater` when L1, L2 and L4 are all Azure, by the Azure persister when only
L1 is elsewhere, through the Azure L0 `adt-pusher` when L2 is elsewhere; with L4 on AWS,
TwinMaker pulls through the hot reader (`shared.contracts.TwinUpdatePath`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.contracts import (
    BOUNDARIES,
    CONTROL,
    FEEDBACK_BOUNDARY,
    LATE_BOUND_SETTINGS,
    LAYER_SLOTS,
    PULL_TWIN_PROVIDERS,
    RECEIVER_OUTPUTS,
    Function,
    Layer,
    Output,
    Setting,
    TwinUpdatePath,
    is_secret_output,
)
from shared.plan.aws import AwsPlanner
from shared.plan.azure import AzurePlanner
from shared.plan.cloud import CloudPlanner, MoverSchedule
from shared.plan.drafts import Draft, Drafts, Hosted
from shared.plan.gcp import GcpPlanner
from shared.plan.model import BoundaryDecision, Plan, PlannedOutput, Resource, Wire
from shared.resources import ResourceConfig
from shared.resources.control import GeneratedSecretConfig
from shared.resources.ownership import Owner, planned_owner, planning_for
from shared.spec import TwinSpec
from shared.validation import Problem, SpecError
from shared.wiring import (
    READER_BOUNDARY,
    boundary_receivers,
    feedback_path,
    function_resource_id,
    hot_reader_layer,
    reader_receivers_needed,
    remote_twin_pull,
)

if TYPE_CHECKING:
    from shared.bundle import BundleCode

HOT_TO_COLD = MoverSchedule(azure_ncrontab="0 0 0 * * *", aws_cron="cron(0 12 * * ? *)", gcp_cron="0 12 * * *")
COLD_TO_ARCHIVE = MoverSchedule(azure_ncrontab="0 0 0 * * *", aws_cron="cron(0 18 * * ? *)", gcp_cron="0 18 * * *")


def placement_of(spec: TwinSpec) -> dict[str, str]:
    """Layer slot -> provider, e.g. {"L1": "aws", ..., "L5": "azure"}."""
    p = spec.providers
    return {str(layer): str(getattr(p, slot)) for layer, slot in LAYER_SLOTS.items()}


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _Builder(Drafts):
    def __init__(self, spec: TwinSpec, code: BundleCode | None = None) -> None:
        super().__init__(spec, placement_of(spec), code)
        opts = spec.options
        self.feedback = feedback_path(self.placement, opts.return_feedback_to_device and opts.use_event_checking)
        self.clouds: dict[str, CloudPlanner] = {
            "aws": AwsPlanner(self), "azure": AzurePlanner(self), "gcp": GcpPlanner(self)}

    def cloud(self, layer: str) -> CloudPlanner:
        """The planner of the cloud that hosts `layer`."""
        return self.clouds[self.placement[layer]]

    def wire_store(self, consumer: str, tier: str, provider: str) -> None:
        """Wire the settings that reach the hot/cold/archive store on `provider` (same cloud)."""
        for output, setting in self.clouds[provider].store_settings(tier):
            self.wire(output, consumer, setting)

    # -- layers ----------------------------------------------------------------------------

    def build(self) -> Plan:
        self.add(CONTROL, "setup", "inter-cloud-token", "secret", GeneratedSecretConfig(
            name="inter-cloud-token", bytes=32, encoding="urlsafe-base64", keeps_previous=True),
            produces=[Output.INTER_CLOUD_TOKEN, Output.INTER_CLOUD_TOKEN_PREVIOUS])
        for provider in self.spec.used_providers():
            self.clouds[provider].setup()
        receivers = boundary_receivers(self.placement, feedback=self.feedback is not None)
        for provider in ("aws", "azure", "gcp"):
            for fn in receivers.get(provider, []):
                self.receiver(provider, fn)
        self.layer_1()
        self.layer_2()
        self.layer_3_hot()
        self.layer_3_cold()
        self.cloud("L3_archive").archive_store()
        self.cloud("L4").layer_4()
        self.layer_5()
        return self.finish(receivers)

    def receiver(self, provider: str, fn: Function) -> None:
        """One L0 receiver on the receiving cloud, with its token and its local targets."""
        cloud = self.clouds[provider]
        produces: list[str] = []
        if provider in PULL_TWIN_PROVIDERS and self.placement["L4"] == provider == self.placement["L3_hot"]:
            # The hot cloud has one reader; its own TwinMaker invokes the public one directly.
            if fn == Function.HOT_READER:
                produces.append(Output.HOT_READER_FUNCTION_ARN)
            elif fn == Function.HOT_READER_LAST_ENTRY:
                produces.append(Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN)
        host = cloud.function(Hosted("L0", fn, public_url=RECEIVER_OUTPUTS[fn], produces=tuple(produces)))
        self.wire_token(host, receiver=True)
        if fn == Function.INGESTION:
            for output, setting in cloud.processor_access():
                self.wire(output, host, setting)
        elif fn in (Function.HOT_WRITER, Function.HOT_READER, Function.HOT_READER_LAST_ENTRY):
            self.wire_store(host, "hot", provider)
        elif fn == Function.COLD_WRITER:
            self.wire_store(host, "cold", provider)
        elif fn == Function.ARCHIVE_WRITER:
            self.wire_store(host, "archive", provider)
        elif fn == Function.ADT_PUSHER:
            self.wire(Output.ADT_INSTANCE_URL, host, Setting.ADT_INSTANCE_URL)
        elif fn == Function.EVENT_FEEDBACK:
            # Feedback from an event checker on another cloud reaches devices through this L1.
            output, setting = cloud.feedback_channel()
            self.wire(output, host, setting)

    def layer_1(self) -> None:
        """Ingestion dispatches to the processor on its cloud, or to a connector that POSTs to
        the remote ingestion receiver."""
        p = self.placement["L1"]
        cloud = self.clouds[p]
        target = Function.PROCESSOR if p == self.placement["L2"] else Function.CONNECTOR
        cloud.layer_1(target)
        if target == Function.CONNECTOR:
            connector = cloud.function(Hosted(
                "L1", Function.CONNECTOR, produces=(Output.CONNECTOR_URL,) if cloud.calls_by_url else ()))
            self.wire(Output.INGESTION_URL, connector, Setting.REMOTE_INGESTION_URL)
            self.wire_token(connector, receiver=False)

    def layer_2(self) -> None:
        """Processors, the persister (local or remote hot storage; the twin update it owns), the
        event checker with its workflow, event feedback, and users' event actions."""
        p = self.placement["L2"]
        cloud = self.clouds[p]
        opts = self.spec.options
        hot = self.placement["L3_hot"]
        if opts.return_feedback_to_device and self.feedback is None:
            # Every cloud's L1 has a channel back to devices and every checker sends across.
            self.notes.append("event feedback to devices is not planned: it needs the event checker "
                              "(options.use_event_checking)")
        cloud.processors()
        # The persister derives its twin duty from DIGITAL_TWIN_INFO.providers with
        # contracts.twin_update_path; the config states it too so providers and tests can see it.
        persister = cloud.function(Hosted(
            "L2", Function.PERSISTER, environment={Setting.USE_EVENT_CHECKING: _flag(opts.use_event_checking)},
            produces=(Output.PERSISTER_URL,) if cloud.calls_by_url else (), twin_update=self.path))
        if hot == p:
            self.wire_store(persister, "hot", p)
        else:
            self.wire(Output.HOT_WRITER_URL, persister, Setting.REMOTE_WRITER_URL)
            self.wire_token(persister, receiver=False)
        if self.path == TwinUpdatePath.REMOTE_ADT_PUSHER:
            self.wire(Output.ADT_PUSHER_URL, persister, Setting.REMOTE_ADT_PUSHER_URL)
            self.wire_token(persister, receiver=False)
        elif self.path == TwinUpdatePath.PERSISTER_DIRECT:
            self.wire(Output.ADT_INSTANCE_URL, persister, Setting.ADT_INSTANCE_URL)
        checker = self.event_checker(cloud, persister) if opts.use_event_checking else None
        if self.feedback == "local":
            output, setting = cloud.feedback_channel()
            if cloud.checker_sends_feedback and checker is not None:
                self.wire(output, checker, setting)
            else:
                fb = cloud.function(Hosted("L2", Function.EVENT_FEEDBACK))
                self.wire(output, fb, setting)
        deployed = [e for e in self.spec.events if e.action.auto_deploy and e.action.type in ("lambda", "function")]
        if deployed and not opts.use_event_checking:
            # Only the event checker runs actions: without it they would be deployed for nothing.
            self.notes.append("event actions with autoDeploy are not planned: nothing runs them without the event "
                              "checker (options.use_event_checking)")
            return
        seen: set[str] = set()
        for index, event in enumerate(self.spec.events):
            action = event.action
            if not action.auto_deploy or action.type not in ("lambda", "function"):
                continue
            for field_name, fname in (("functionName", action.function_name), ("functionNameB", action.function_name_b)):
                if fname is None or fname in seen:
                    continue
                seen.add(fname)
                spec_path = f"events[{index}].action.{field_name}"
                # pathToCode is the code of functionName; functionNameB's is in its default folder.
                path_to_code = action.path_to_code if field_name == "functionName" else None
                code = self.action_code(fname, path_to_code, spec_path)
                cloud.event_action(fname, path_to_code, spec_path, code)

    def event_checker(self, cloud: CloudPlanner, persister: str) -> str:
        p = cloud.provider
        opts = self.spec.options
        rules = json.dumps([e.model_dump(by_alias=True, exclude_none=True) for e in self.spec.events],
                           sort_keys=True, separators=(",", ":"))
        checker = cloud.function(Hosted(
            "L2", Function.EVENT_CHECKER,
            environment={Setting.EVENT_RULES: rules, Setting.USE_FEEDBACK: _flag(self.feedback is not None)},
            produces=(Output.EVENT_CHECKER_URL,) if cloud.calls_by_url else ()))
        if self.feedback == "remote":
            self.wire(Output.FEEDBACK_URL, checker, Setting.REMOTE_FEEDBACK_URL)
            self.wire_token(checker, receiver=False)
        if cloud.calls_by_url:
            self.wire(Output.EVENT_CHECKER_URL, persister, Setting.EVENT_CHECKER_URL)
        l4 = self.placement["L4"]
        if l4 == p == "aws":
            self.wire(Output.TWINMAKER_WORKSPACE_NAME, checker, Setting.TWINMAKER_WORKSPACE_NAME)
        elif l4 == p == "azure":
            self.wire(Output.ADT_INSTANCE_URL, checker, Setting.ADT_INSTANCE_URL)
        elif l4 != p:
            self.notes.append(
                f"the event checker on {p} cannot read live twin values from {l4}; conditions on twin "
                "properties evaluate against the reading itself")
        if opts.trigger_notification_workflow:
            output, setting = cloud.workflow()
            self.wire(output, checker, setting)
        return checker

    def layer_3_hot(self) -> None:
        """The hot store, the readers TwinMaker or Grafana use on the same cloud, and the mover
        to cold storage (local, or through the remote cold writer)."""
        p = self.placement["L3_hot"]
        cloud = self.clouds[p]
        cloud.hot_store()
        if hot_reader_layer(self.placement) == Layer.L3_HOT:
            l5_local = self.placement["L5"] == p
            l4_local = self.placement["L4"] == p and p in PULL_TWIN_PROVIDERS
            for fn, arn in ((Function.HOT_READER, Output.HOT_READER_FUNCTION_ARN),
                            (Function.HOT_READER_LAST_ENTRY, Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN)):
                if fn == Function.HOT_READER_LAST_ENTRY and not l4_local:
                    continue  # only TwinMaker reads the latest entry; Grafana queries ranges
                url = Output.LOCAL_HOT_READER_URL if (fn == Function.HOT_READER and l5_local) else None
                host = cloud.function(Hosted("L3_hot", fn, public_url=url, produces=(arn,) if l4_local else ()))
                self.wire_store(host, "hot", p)
                if url is not None:
                    self.wire_token(host, receiver=True)
        mover = cloud.mover("L3_hot", Function.HOT_TO_COLD_MOVER, HOT_TO_COLD)
        self.wire_store(mover, "hot", p)
        if self.placement["L3_cold"] == p:
            self.wire_store(mover, "cold", p)
        else:
            self.wire(Output.COLD_WRITER_URL, mover, Setting.REMOTE_COLD_WRITER_URL)
            self.wire_token(mover, receiver=False)

    def layer_3_cold(self) -> None:
        """The cold store and the mover to the archive (local, or through the archive writer)."""
        p = self.placement["L3_cold"]
        cloud = self.clouds[p]
        cloud.cold_store()
        mover = cloud.mover("L3_cold", Function.COLD_TO_ARCHIVE_MOVER, COLD_TO_ARCHIVE)
        self.wire_store(mover, "cold", p)
        if self.placement["L3_archive"] == p:
            self.wire_store(mover, "archive", p)
        else:
            self.wire(Output.ARCHIVE_WRITER_URL, mover, Setting.REMOTE_ARCHIVE_WRITER_URL)
            self.wire_token(mover, receiver=False)

    def layer_5(self) -> None:
        """Grafana's datasource queries the public reader when there is one (it serves a
        same-cloud datasource too), else the local one."""
        datasource = self.cloud("L5").layer_5()
        url = Output.HOT_READER_URL if hot_reader_layer(self.placement) == Layer.L0 else Output.LOCAL_HOT_READER_URL
        self.wire(url, datasource, Setting.DATASOURCE_URL)
        self.wire(Output.INTER_CLOUD_TOKEN, datasource, Setting.DATASOURCE_TOKEN)

    # -- finishing -------------------------------------------------------------------------

    def check_cloud_names(self) -> None:
        """Two resources must never manage the same cloud object. Cloud names compare without
        case (IAM role and Azure names ignore it, S3 and GCP lowercase them), so user-chosen
        parts of names can collide: device ids differing only in case, an AWS event action
        `{twin}-{functionName}` equal to another function or role. Each is a spec problem at
        the path that chose the name; a collision of names the planner alone chose is a bug."""
        taken: dict[tuple[str, str, str], str] = {}
        problems: list[Problem] = []
        reported: set[tuple[str, str]] = set()
        device_paths = {dev.id: f"devices[{i}].id" for i, dev in enumerate(self.spec.devices)}
        for d in self.drafts.values():
            for namespace, name in _claimed_names(d):
                key = (d.provider, namespace, name.casefold())
                other = taken.setdefault(key, d.id)
                if other == d.id:
                    continue
                # Blame an event action's name first (the one choice that is only a name), then a device id.
                blamed = [(rid, self.user_named[rid]) for rid in (d.id, other) if rid in self.user_named]
                blamed += [(rid, path) for rid in (d.id, other) if (path := self._device_path(rid, device_paths))]
                if not blamed:
                    raise RuntimeError(f"{other} and {d.id} both manage {d.provider} {namespace} {name}")
                chooser, path = blamed[0]
                clash = other if chooser == d.id else d.id
                if (path, clash) not in reported:
                    reported.add((path, clash))
                    problems.append(Problem(path, f"its {d.provider} {namespace} would be named {name!r}, which "
                                                  f"{clash} also takes (cloud names compare without case); "
                                                  "choose another name"))
        if problems:
            raise SpecError(problems)

    def _device_path(self, rid: str, device_paths: Mapping[str, str]) -> str | None:
        """The spec path of the device id in resource `rid`'s cloud name, if any."""
        config = self.drafts[rid].config
        if not isinstance(config, ResourceConfig) or "device_id" not in type(config).model_fields:
            return None
        device = config.device_id  # type: ignore[attr-defined]
        return device_paths.get(device) if isinstance(device, str) else None

    def finish(self, receivers: Mapping[str, list[Function]]) -> Plan:
        self.check_cloud_names()
        order = {rid: i for i, rid in enumerate(self.drafts)}
        producer: dict[str, str] = {}
        for d in self.drafts.values():
            for out in d.produces:
                if out in producer and producer[out] != d.id:
                    raise RuntimeError(f"output {out} has two producers: {producer[out]} and {d.id}")
                producer[out] = d.id
        wires: list[Wire] = []
        for output, consumer, setting in self.wires:
            if output not in producer:
                raise RuntimeError(f"{consumer} consumes {output}, which no planned resource produces")
            late = setting in LATE_BOUND_SETTINGS
            wires.append(Wire(output, producer[output], consumer, setting, late))
            if producer[output] != consumer and not late:
                self.drafts[consumer].needs.append(producer[output])
        resources = []
        owner = planned_owner()
        for d in self.drafts.values():
            missing = [n for n in d.needs if n not in order]
            if missing:
                raise RuntimeError(f"{d.id} needs {missing}, which are not planned")
            needs = sorted({n for n in d.needs if n != d.id}, key=order.__getitem__)
            produces = list(dict.fromkeys(d.produces))
            config = d.final_config()
            if config.owner is not owner and config.owner != owner:
                raise RuntimeError(f"{d.id} is owned by {config.owner}, not by the twin planned ({owner})")
            resources.append(Resource(d.id, d.layer, d.provider, d.kind, d.name, tuple(needs), tuple(produces),
                                      config))
        outputs = [PlannedOutput(name, r.id, is_secret_output(name)) for r in resources for name in r.produces]
        decisions = self.boundary_decisions(receivers)
        return Plan(self.twin, self.placement, resources, outputs, wires, self.path, decisions, self.notes,
                    self.code_problems)

    def boundary_decisions(self, receivers: Mapping[str, list[Function]]) -> list[BoundaryDecision]:
        out: list[BoundaryDecision] = []
        pl = self.placement
        for b in BOUNDARIES:
            if b.name == FEEDBACK_BOUNDARY:
                s, r = pl[b.sender_layer], pl[b.receiver_layer]
                crosses = self.feedback == "remote"
                out.append(BoundaryDecision(
                    b.name, s, r, crosses,
                    tuple(function_resource_id(r, "L0", f) for f in b.receivers) if crosses else (),
                    (function_resource_id(s, b.sender_layer, b.sender),) if crosses else ()))
                continue
            if b.name == READER_BOUNDARY:
                hot = pl["L3_hot"]
                crosses = reader_receivers_needed(pl)
                senders: list[str] = []
                if remote_twin_pull(pl):
                    senders += [function_resource_id(pl["L4"], "L4", Function.DT_READER),
                                function_resource_id(pl["L4"], "L4", Function.DT_READER_LAST_ENTRY)]
                if pl["L5"] != hot:
                    senders.append(f"{pl['L5']}/L5/grafana-datasource")
                out.append(BoundaryDecision(
                    b.name, ",".join(sorted({pl["L4"], pl["L5"]})), hot, crosses,
                    tuple(dict.fromkeys(function_resource_id(hot, "L0", f) for f in b.receivers)) if crosses else (),
                    tuple(dict.fromkeys(senders))))
                continue
            s, r = pl[b.sender_layer], pl[b.receiver_layer]
            crosses = s != r
            out.append(BoundaryDecision(
                b.name, s, r, crosses,
                tuple(function_resource_id(r, "L0", f) for f in b.receivers) if crosses else (),
                (function_resource_id(s, b.sender_layer, b.sender),) if crosses else ()))
        pushing = self.path == TwinUpdatePath.REMOTE_ADT_PUSHER
        out.append(BoundaryDecision(
            "L2->L4 (adt-pusher)", pl["L2"], pl["L4"], pushing,
            (function_resource_id("azure", "L0", Function.ADT_PUSHER),) if pushing else (),
            (function_resource_id(pl["L2"], "L2", Function.PERSISTER),) if pushing else ()))
        return out


def _claimed_names(d: Draft) -> list[tuple[str, str]]:
    """(namespace, name) of every cloud object resource `d` manages: its own (one namespace per
    kind) and the IAM role or IoT policy that lives and dies with it (their own namespaces,
    shared across kinds)."""
    if d.provider == CONTROL:
        return []
    out = [(d.kind, d.name)]
    if d.kind == "step-function":
        out.append(("iam-role", d.name))  # the state machine's role is named like it
    config = d.config
    fields = type(config).model_fields if isinstance(config, ResourceConfig) else {}
    if "role_name" in fields:
        out.append(("iam-role", str(config.role_name)))  # type: ignore[union-attr]
    if "policy_name" in fields:
        out.append(("iot-policy", str(config.policy_name)))  # type: ignore[union-attr]
    return out


def build_plan(spec: TwinSpec, code: BundleCode | None = None) -> Plan:
    """The resources, outputs and wires of `spec` (pure and deterministic). `code` is the code of
    the bundle the spec came in (`shared.bundle`): processors and event actions are planned from
    it; without it devices get the default processor and `autoDeploy` actions cannot be deployed
    (`Plan.code_problems` says why, with their paths).

    Raises `SpecError` if L4 or L5 is placed on gcp (GCP hosts neither); the loaders already
    reject such specs, so this only guards direct callers."""
    placement = placement_of(spec)
    problems = [Problem(f"providers.{LAYER_SLOTS[Layer(layer)]}", f"{layer} cannot run on gcp; choose aws or azure")
                for layer in ("L4", "L5") if placement[layer] == "gcp"]
    if problems:
        raise SpecError(problems)
    with planning_for(Owner(twin=spec.twin.name)):
        plan = _Builder(spec, code).build()
    plan.topological_order()
    return plan
