"""The plan: every resource a twin needs, the outputs they yield, and the wires between them.

`build_plan(spec)` is a pure, deterministic function of the spec (DESIGN.md section 5). It knows
the boundary rules (a receiver runs in L0 of the receiving cloud only when the sending layer is on
another cloud), the twin-update decision table, and which setting of which consumer each output
feeds. Providers read a resource's `config`; the orchestrator walks `topological_order()` and,
when an output changes, re-applies `consumers_of(output)`.

Resource ids are `{provider}/{layer}/{name}`. An Azure Function App is one resource
(`azure/{layer}/function-app`) whose config lists the functions it hosts, because its app
settings are read-modify-written as a whole. Secrets never appear in `config`: they travel as
secret outputs through wires and are filled in by the provider at apply time.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import (
    BOUNDARIES,
    CONTROL,
    COSMOS_PARTITION_KEY_PATH,
    FUNCTIONS,
    LATE_BOUND_SETTINGS,
    LAYER_SLOTS,
    LAYERS,
    PULL_TWIN_PROVIDERS,
    RECEIVER_OUTPUTS,
    DigitalTwinInfo,
    Function,
    Layer,
    Output,
    Setting,
    StorageKey,
    TwinUpdatePath,
    device_credentials_output,
    is_secret_output,
    twin_update_path,
)
from shared.naming import AwsNaming, AzureNaming, GcpNaming
from shared.spec import TwinSpec
from shared.validation import Problem, SpecError
from shared.wiring import (
    READER_BOUNDARY,
    boundary_receivers,
    function_resource_id,
    hot_reader_layer,
    reader_receivers_needed,
    remote_twin_pull,
)

# Built-in Azure role definition ids (seed-inventory 2.2, cloud-surfaces section 1).
ROLE_IOT_HUB_DATA_CONTRIBUTOR = "4fc6c259-987e-4a07-842e-c321cc9d413f"
ROLE_IOT_HUB_REGISTRY_CONTRIBUTOR = "4ea46cd5-c1b2-4a8e-910b-273211f9ce47"
ROLE_ADT_DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"

AWS_LAMBDA_RUNTIME = "python3.12"
PYTHON_VERSION = "3.11"

# Typical provisioning times in seconds, used by `critical_path` when no measured durations are
# given (Cosmos DB and Managed Grafana are the slow ones in practice).
DEFAULT_KIND_SECONDS: dict[str, float] = {
    "secret": 0.1,
    "resource-group": 2,
    "identity": 5,
    "storage-account": 25,
    "app-service-plan": 10,
    "function-app": 90,
    "lambda": 8,
    "cloud-function": 60,
    "iot-hub": 120,
    "iot-device": 1,
    "iot-topic-rule": 2,
    "eventgrid-system-topic": 20,
    "event-subscription": 15,
    "role-assignment": 30,
    "cosmos-account": 300,
    "cosmos-container": 20,
    "blob-container": 2,
    "dynamodb-table": 10,
    "s3-bucket": 2,
    "digital-twins": 60,
    "dtdl-models": 5,
    "twin-graph": 10,
    "twinmaker-workspace": 10,
    "twinmaker-component-type": 5,
    "twinmaker-entities": 10,
    "grafana": 300,
    "grafana-datasource": 3,
}
DEFAULT_SECONDS = 10.0


# ---------------------------------------------------------------------------------------------
# The plan's data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class Resource:
    """One thing a provider creates and reconciles as a unit."""

    id: str
    layer: str
    provider: str
    kind: str
    name: str
    """The resource's name in its cloud (from `shared.naming`)."""
    needs: tuple[str, ...]
    produces: tuple[str, ...]
    config: Mapping[str, Any] = field(hash=False)
    """The desired configuration: plain JSON data, never a secret."""

    def to_json(self, include_config: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "layer": self.layer,
            "provider": self.provider,
            "kind": self.kind,
            "needs": list(self.needs),
            "produces": list(self.produces),
        }
        if include_config:
            out["name"] = self.name
            out["config"] = self.config
        return out


@dataclass(frozen=True)
class PlannedOutput:
    name: str
    producer: str
    secret: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "producer": self.producer, "secret": self.secret}


@dataclass(frozen=True)
class Wire:
    """`output` (yielded by `producer`) is written into `consumer`'s `setting`."""

    output: str
    producer: str
    consumer: str
    setting: str
    late: bool = False
    """Late-bound (`LATE_BOUND_SETTINGS`): filled in by propagation, not a creation dependency."""

    def to_json(self) -> dict[str, str]:
        # Exactly the documented `--json` shape; lateness follows from the setting name.
        return {"output": self.output, "producer": self.producer, "consumer": self.consumer, "setting": self.setting}


@dataclass(frozen=True)
class BoundaryDecision:
    """How one boundary is realised for this spec."""

    boundary: str
    sender_provider: str
    receiver_provider: str
    crosses: bool
    receivers: tuple[str, ...]
    """Receiver resource ids (empty when the boundary stays inside one cloud)."""
    senders: tuple[str, ...]
    """Resource ids of the sending side that get the receiver's URL and the token."""

    def to_json(self) -> dict[str, Any]:
        return {
            "boundary": self.boundary,
            "sender_provider": self.sender_provider,
            "receiver_provider": self.receiver_provider,
            "crosses": self.crosses,
            "receivers": list(self.receivers),
            "senders": list(self.senders),
        }


class Plan:
    """The resource graph of one twin. Built by `build_plan`; immutable by convention."""

    def __init__(
        self,
        twin: str,
        placement: Mapping[str, str],
        resources: Iterable[Resource],
        outputs: Iterable[PlannedOutput],
        wires: Iterable[Wire],
        twin_update: TwinUpdatePath,
        boundaries: Iterable[BoundaryDecision],
        notes: Iterable[str] = (),
    ) -> None:
        self.twin = twin
        self.placement: dict[str, str] = dict(placement)
        self.resources: tuple[Resource, ...] = tuple(resources)
        self.outputs: tuple[PlannedOutput, ...] = tuple(outputs)
        self.wires: tuple[Wire, ...] = tuple(wires)
        self.twin_update = twin_update
        self.boundaries: tuple[BoundaryDecision, ...] = tuple(boundaries)
        self.notes: tuple[str, ...] = tuple(notes)
        self._by_id = {r.id: r for r in self.resources}
        self._index = {r.id: i for i, r in enumerate(self.resources)}
        self._outputs = {o.name: o for o in self.outputs}
        self._producer = {o.name: o.producer for o in self.outputs}
        self._consumers: dict[str, list[Wire]] = {}
        for w in self.wires:
            self._consumers.setdefault(w.output, []).append(w)
        self._topo: list[str] | None = None

    # -- lookups ---------------------------------------------------------------------------

    def resource(self, resource_id: str) -> Resource:
        return self._by_id[resource_id]

    def has(self, resource_id: str) -> bool:
        return resource_id in self._by_id

    def producer_of(self, output: str) -> str | None:
        return self._producer.get(output)

    def output(self, name: str) -> PlannedOutput | None:
        return self._outputs.get(name)

    def wires_of(self, output: str) -> list[Wire]:
        """Every wire carrying `output`, in plan order."""
        return list(self._consumers.get(output, ()))

    def consumers_of(self, output: str) -> list[str]:
        """Resource ids to re-apply when `output` changes (each once, in plan order)."""
        seen: dict[str, None] = {}
        for w in self._consumers.get(output, ()):
            seen.setdefault(w.consumer, None)
        return list(seen)

    def wires_into(self, consumer: str) -> list[Wire]:
        """The settings `consumer` receives from outputs, in plan order."""
        return [w for w in self.wires if w.consumer == consumer]

    def settings_of(self, consumer: str) -> dict[str, str]:
        """setting name -> output name for one consumer."""
        return {w.setting: w.output for w in self.wires if w.consumer == consumer}

    def resources_in(self, layer: str, provider: str | None = None) -> list[Resource]:
        return [r for r in self.resources if r.layer == layer and (provider is None or r.provider == provider)]

    # -- graph -----------------------------------------------------------------------------

    def layers(self) -> dict[str, list[str]]:
        """Layer -> the providers that have resources in it, in layer order."""
        out: dict[str, list[str]] = {}
        for layer in LAYERS:
            providers = [p for p in ("control", "aws", "azure", "gcp") if any(
                r.layer == layer and r.provider == p for r in self.resources)]
            if providers:
                out[str(layer)] = providers
        return out

    def topological_order(self) -> list[str]:
        """Resource ids so that every resource comes after what it needs. Ties keep plan order,
        so the same spec always gives the same order. Raises ValueError on a cycle."""
        if self._topo is not None:
            return list(self._topo)
        indegree = {r.id: len(r.needs) for r in self.resources}
        dependents: dict[str, list[str]] = {r.id: [] for r in self.resources}
        for r in self.resources:
            for need in r.needs:
                dependents[need].append(r.id)
        ready = [self._index[rid] for rid, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            rid = self.resources[heapq.heappop(ready)].id
            order.append(rid)
            for dep in dependents[rid]:
                indegree[dep] -= 1
                if indegree[dep] == 0:
                    heapq.heappush(ready, self._index[dep])
        if len(order) != len(self.resources):
            stuck = sorted(rid for rid, d in indegree.items() if d > 0)
            raise ValueError(f"the plan has a dependency cycle among: {', '.join(stuck[:10])}")
        self._topo = order
        return list(order)

    def critical_path(
        self, durations: Mapping[str, float] | Callable[[Resource], float] | None = None
    ) -> tuple[float, list[str]]:
        """The longest chain of needs, weighted by each resource's duration in seconds.

        `durations` maps resource id -> seconds (missing ids fall back to the kind's typical
        time), or is a function of the resource. Returns (total seconds, resource ids)."""

        def cost(r: Resource) -> float:
            if callable(durations):
                return float(durations(r))
            if durations is not None and r.id in durations:
                return float(durations[r.id])
            return DEFAULT_KIND_SECONDS.get(r.kind, DEFAULT_SECONDS)

        finish: dict[str, float] = {}
        via: dict[str, str | None] = {}
        for rid in self.topological_order():
            r = self._by_id[rid]
            best, prev = 0.0, None
            for need in r.needs:
                if finish[need] > best:
                    best, prev = finish[need], need
            finish[rid] = best + cost(r)
            via[rid] = prev
        if not finish:
            return 0.0, []
        end = max(finish, key=lambda rid: (finish[rid], -self._index[rid]))
        path: list[str] = []
        cur: str | None = end
        while cur is not None:
            path.append(cur)
            cur = via[cur]
        return finish[end], path[::-1]

    # -- deployability ---------------------------------------------------------------------

    def deployable(self) -> list[str]:
        """Why this plan cannot be deployed yet; empty when it can."""
        blockers: list[str] = []
        gcp_layers = [layer for layer, provider in self.placement.items() if provider == "gcp"]
        if gcp_layers:
            listed = ", ".join(f"{layer} (gcp)" for layer in gcp_layers)
            blockers.append(f"no GCP provider yet: layers {listed} are planned but cannot be deployed")
        # A spec is one JSON document: it cannot carry the code of an event action's function.
        actions = [r.name for r in self.resources if r.config.get("package") == "event-action"]
        actions += [f["user_function"] for r in self.resources for f in r.config.get("functions", [])
                    if f.get("package") == "event-action"]
        if actions:
            blockers.append(
                f"event actions with autoDeploy need their code, which a spec cannot carry yet: "
                f"{', '.join(sorted(actions))}; deploy those functions yourself and set autoDeploy to false"
            )
        return blockers

    # -- rendering -------------------------------------------------------------------------

    def to_json(self, include_config: bool = False) -> dict[str, Any]:
        """The `plan --json` / `POST /api/plan` document."""
        return {
            "twin": self.twin,
            "resources": [r.to_json(include_config) for r in self.resources],
            "outputs": [o.to_json() for o in self.outputs],
            "wires": [w.to_json() for w in self.wires],
            "placement": dict(self.placement),
            "twin_update": str(self.twin_update),
            "boundaries": [b.to_json() for b in self.boundaries],
            "deployable": not self.deployable(),
            "blockers": self.deployable(),
            "notes": list(self.notes),
        }

    def to_mermaid(self) -> str:
        """A Mermaid flowchart: resources grouped by provider, solid edges from what is needed to
        what needs it, dotted edges for late-bound wires (filled in by propagation), each labelled
        with the settings a wire fills in."""
        node = {r.id: f"r{i}" for i, r in enumerate(self.resources)}
        lines = ["flowchart LR"]
        for provider in ("control", "aws", "azure", "gcp"):
            members = [r for r in self.resources if r.provider == provider]
            if not members:
                continue
            lines.append(f"  subgraph {provider}[{provider}]")
            for r in members:
                label = _mermaid_text(f"{r.layer}/{r.id.split('/', 2)[2]}<br/>{r.kind}")
                lines.append(f'    {node[r.id]}["{label}"]')
            lines.append("  end")
        labels: dict[tuple[str, str], list[str]] = {}
        late: dict[tuple[str, str], list[str]] = {}
        for w in self.wires:
            text = w.output if w.output == w.setting else f"{w.output} as {w.setting}"
            (late if w.late else labels).setdefault((w.producer, w.consumer), []).append(text)
        for r in self.resources:
            for need in r.needs:
                texts = labels.get((need, r.id))
                if texts:
                    lines.append(f'  {node[need]} -->|"{_mermaid_text(", ".join(texts))}"| {node[r.id]}')
                else:
                    lines.append(f"  {node[need]} --> {node[r.id]}")
        for (producer, consumer), texts in late.items():
            lines.append(f'  {node[producer]} -.->|"{_mermaid_text(", ".join(texts))}"| {node[consumer]}')
        return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


# ---------------------------------------------------------------------------------------------
# Placement and boundary rules
# ---------------------------------------------------------------------------------------------


def placement_of(spec: TwinSpec) -> dict[str, str]:
    """Layer slot -> provider, e.g. {"L1": "aws", ..., "L5": "azure"}."""
    p = spec.providers
    return {str(layer): str(getattr(p, slot)) for layer, slot in LAYER_SLOTS.items()}


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    id: str
    layer: str
    provider: str
    kind: str
    name: str
    config: dict[str, Any]
    needs: list[str] = field(default_factory=list)
    produces: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, spec: TwinSpec) -> None:
        self.spec = spec
        self.twin = spec.twin.name
        self.placement = placement_of(spec)
        self.az = AzureNaming(self.twin)
        self.aws = AwsNaming(self.twin)
        self.gcp = GcpNaming(self.twin)
        self.drafts: dict[str, _Draft] = {}
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

    # -- primitives ------------------------------------------------------------------------

    def add(
        self,
        provider: str,
        layer: str,
        short: str,
        kind: str,
        name: str,
        config: dict[str, Any],
        needs: Iterable[str] = (),
        produces: Iterable[str] = (),
    ) -> _Draft:
        rid = f"{provider}/{layer}/{short}"
        if rid in self.drafts:
            raise RuntimeError(f"resource {rid} planned twice")
        draft = _Draft(rid, layer, provider, kind, name, {"name": name, **config}, list(needs), list(produces))
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

    def wire_store(self, consumer: str, tier: str, provider: str) -> None:
        """Wire the settings that reach the hot/cold/archive store on `provider` (same cloud)."""
        pairs: Sequence[tuple[str, str]]
        if tier == "hot":
            pairs = {
                "aws": [(Output.DYNAMODB_TABLE_NAME, Setting.DYNAMODB_TABLE_NAME)],
                "azure": [
                    (Output.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_ENDPOINT),
                    (Output.COSMOS_DB_KEY, Setting.COSMOS_DB_KEY),
                    (Output.COSMOS_DB_DATABASE, Setting.COSMOS_DB_DATABASE),
                    (Output.COSMOS_DB_CONTAINER, Setting.COSMOS_DB_CONTAINER),
                ],
                "gcp": [
                    (Output.FIRESTORE_DATABASE, Setting.FIRESTORE_DATABASE),
                    (Output.FIRESTORE_COLLECTION, Setting.FIRESTORE_COLLECTION),
                ],
            }[provider]
        elif tier == "cold":
            pairs = {
                "aws": [(Output.COLD_S3_BUCKET_NAME, Setting.COLD_S3_BUCKET_NAME)],
                "azure": [
                    (Output.AZURE_STORAGE_CONNECTION_STRING, Setting.BLOB_CONNECTION_STRING),
                    (Output.COLD_STORAGE_CONTAINER, Setting.COLD_STORAGE_CONTAINER),
                ],
                "gcp": [(Output.COLD_GCS_BUCKET, Setting.COLD_GCS_BUCKET)],
            }[provider]
        else:
            pairs = {
                "aws": [(Output.ARCHIVE_S3_BUCKET_NAME, Setting.ARCHIVE_S3_BUCKET_NAME)],
                "azure": [
                    (Output.AZURE_STORAGE_CONNECTION_STRING, Setting.BLOB_CONNECTION_STRING),
                    (Output.ARCHIVE_STORAGE_CONTAINER, Setting.ARCHIVE_STORAGE_CONTAINER),
                ],
                "gcp": [(Output.ARCHIVE_GCS_BUCKET, Setting.ARCHIVE_GCS_BUCKET)],
            }[provider]
        for output, setting in pairs:
            self.wire(output, consumer, setting)

    # -- per-cloud function hosting --------------------------------------------------------

    def function(
        self,
        provider: str,
        layer: str,
        function: Function,
        *,
        short: str | None = None,
        cloud_name: str | None = None,
        environment: Mapping[Setting, str] | None = None,
        public_url: Output | None = None,
        produces: Iterable[str] = (),
        needs: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Plan one payload function; returns the id of the resource that hosts it."""
        env = {str(Setting.DIGITAL_TWIN_INFO): self.info_json, **{str(k): v for k, v in (environment or {}).items()}}
        contract = FUNCTIONS[function]
        if provider == "azure":
            app = self.azure_app(layer)
            hosted = app.config["functions"]
            entry = {
                "name": str(function) if short is None else short,
                "package": str(function),
                "trigger": contract.trigger,
                # Receivers are called from other clouds and check the inter-cloud token in code.
                "auth_level": "anonymous" if contract.receiver else ("function" if contract.trigger == "http" else None),
            }
            if extra:
                entry.update(extra)
            hosted.append(entry)
            app.config["app_settings"].update({k: v for k, v in env.items() if k != Setting.DIGITAL_TWIN_INFO})
            app.produces.extend(str(p) for p in (public_url, *produces) if p is not None)
            app.needs.extend(needs)
            return app.id
        rid_short = short or str(function)
        if provider == "aws":
            name = cloud_name or self.aws.function(rid_short)
            config: dict[str, Any] = {
                "role_name": self.aws.role(rid_short) if cloud_name is None else cloud_name,
                "package": str(function),
                "runtime": AWS_LAMBDA_RUNTIME,
                "trigger": contract.trigger,
                "environment": env,
                "function_url": public_url is not None,
                "region": self.spec.clouds.aws.region,
                **(extra or {}),
            }
            kind = "lambda"
            base_needs = ["aws/setup/resource-group"]
        else:
            name = cloud_name or self.gcp.function(rid_short)
            config = {
                "package": str(function),
                "runtime": f"python{PYTHON_VERSION.replace('.', '')}",
                "trigger": contract.trigger,
                "environment": env,
                "public": public_url is not None,
                "region": self.spec.clouds.gcp.region,
                "service_account": self.gcp.service_account(),
                **(extra or {}),
            }
            kind = "cloud-function"
            base_needs = ["gcp/setup/service-account", "gcp/setup/functions-bucket"]
        outputs = [str(p) for p in (public_url, *produces) if p is not None]
        draft = self.add(provider, layer, rid_short, kind, name, config, [*base_needs, *needs], outputs)
        return draft.id

    def azure_app(self, layer: str) -> _Draft:
        rid = f"azure/{layer}/function-app"
        if rid in self.drafts:
            return self.drafts[rid]
        az = self.spec.clouds.azure
        plan = self.add(
            "azure", layer, "app-plan", "app-service-plan", self.az.plan(layer),
            {"resource_group": self.az.resource_group(), "location": az.region, "sku": az.functions_plan},
            needs=["azure/setup/resource-group"],
        )
        settings: dict[str, str] = {str(Setting.DIGITAL_TWIN_INFO): self.info_json}
        if az.functions_plan != "FC1":
            # Flex Consumption takes the runtime from functionAppConfig and rejects these.
            settings[str(Setting.FUNCTIONS_WORKER_RUNTIME)] = "python"
            settings[str(Setting.FUNCTIONS_EXTENSION_VERSION)] = "~4"
        app = self.add(
            "azure", layer, "function-app", "function-app", self.az.function_app(layer),
            {
                "resource_group": self.az.resource_group(),
                "location": az.region,
                "plan": plan.name,
                "runtime": {"name": "python", "version": PYTHON_VERSION},
                "identity": self.az.identity(),
                "functions": [],
                "app_settings": settings,
            },
            needs=[plan.id, "azure/setup/identity", "azure/setup/storage-account"],
        )
        self.wire(Output.AZURE_STORAGE_CONNECTION_STRING, app.id, Setting.AZURE_WEBJOBS_STORAGE)
        self.wire(Output.AZURE_IDENTITY_CLIENT_ID, app.id, Setting.AZURE_CLIENT_ID)
        return app

    # -- layers ----------------------------------------------------------------------------

    def build(self) -> Plan:
        used = self.spec.used_providers()
        self.add(CONTROL, "setup", "inter-cloud-token", "secret", "inter-cloud-token",
                 {"bytes": 32, "encoding": "urlsafe-base64", "keeps_previous": True},
                 produces=[Output.INTER_CLOUD_TOKEN, Output.INTER_CLOUD_TOKEN_PREVIOUS])
        for provider in used:
            getattr(self, f"setup_{provider}")()
        receivers = boundary_receivers(self.placement)
        for provider in ("aws", "azure", "gcp"):
            for fn in receivers.get(provider, []):
                self.receiver(provider, fn)
        self.layer_1()
        self.layer_2()
        self.layer_3_hot()
        self.layer_3_cold()
        self.layer_3_archive()
        self.layer_4()
        self.layer_5()
        return self.finish(receivers)

    def setup_aws(self) -> None:
        self.add("aws", "setup", "resource-group", "resource-group", self.aws.resource_group(),
                 {"region": self.spec.clouds.aws.region,
                  "tags": {"DigitalTwin": self.twin, "Project": "twin-control-plane"}})

    def setup_azure(self) -> None:
        az = self.spec.clouds.azure
        rg = self.add("azure", "setup", "resource-group", "resource-group", self.az.resource_group(),
                      {"location": az.region, "subscription_id": az.subscription_id,
                       "tags": {"DigitalTwin": self.twin}})
        self.add("azure", "setup", "identity", "identity", self.az.identity(),
                 {"resource_group": rg.name, "location": az.region}, needs=[rg.id],
                 produces=[Output.AZURE_IDENTITY_CLIENT_ID, Output.AZURE_IDENTITY_PRINCIPAL_ID])
        self.add("azure", "setup", "storage-account", "storage-account", self.az.storage_account(),
                 {"resource_group": rg.name, "location": az.region, "sku": "Standard_LRS", "kind": "StorageV2",
                  "https_only": True, "minimum_tls_version": "TLS1_2"},
                 needs=[rg.id], produces=[Output.AZURE_STORAGE_CONNECTION_STRING])

    def setup_gcp(self) -> None:
        gcp = self.spec.clouds.gcp
        self.add("gcp", "setup", "service-account", "service-account", self.gcp.service_account(),
                 {"project_id": gcp.project_id})
        self.add("gcp", "setup", "functions-bucket", "gcs-bucket", self.gcp.functions_bucket(),
                 {"project_id": gcp.project_id, "location": gcp.region, "storage_class": "STANDARD"})

    def receiver(self, provider: str, fn: Function) -> None:
        """One L0 receiver on the receiving cloud, with its token and its local targets."""
        produces: list[str] = []
        if provider in PULL_TWIN_PROVIDERS and self.placement["L4"] == provider == self.placement["L3_hot"]:
            # The hot cloud has one reader; its own TwinMaker invokes the public one directly.
            if fn == Function.HOT_READER:
                produces.append(Output.HOT_READER_FUNCTION_ARN)
            elif fn == Function.HOT_READER_LAST_ENTRY:
                produces.append(Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN)
        host = self.function(provider, "L0", fn, public_url=RECEIVER_OUTPUTS[fn], produces=produces)
        self.wire_token(host, receiver=True)
        if fn == Function.INGESTION:
            self.wire_processor(provider, host)
        elif fn in (Function.HOT_WRITER, Function.HOT_READER, Function.HOT_READER_LAST_ENTRY):
            self.wire_store(host, "hot", provider)
        elif fn == Function.COLD_WRITER:
            self.wire_store(host, "cold", provider)
        elif fn == Function.ARCHIVE_WRITER:
            self.wire_store(host, "archive", provider)
        elif fn == Function.ADT_PUSHER:
            self.wire(Output.ADT_INSTANCE_URL, host, Setting.ADT_INSTANCE_URL)

    def wire_processor(self, provider: str, consumer: str) -> None:
        """Let `consumer` call the L2 processor on its own cloud (AWS invokes it by name)."""
        if provider == "azure":
            self.wire(Output.PROCESSOR_URL, consumer, Setting.PROCESSOR_URL)
            self.wire(Output.PROCESSOR_KEY, consumer, Setting.PROCESSOR_KEY)
        elif provider == "gcp":
            self.wire(Output.PROCESSOR_URL, consumer, Setting.PROCESSOR_URL)

    def layer_1(self) -> None:
        p, l2 = self.placement["L1"], self.placement["L2"]
        target = Function.PROCESSOR if p == l2 else Function.CONNECTOR
        env = {Setting.TARGET_FUNCTION: str(target)}
        devices = self.spec.devices
        if p == "aws":
            dispatcher = self.function("aws", "L1", Function.DISPATCHER, environment=env)
            self.add("aws", "L1", "iot-rule", "iot-topic-rule", self.aws.iot_rule(),
                     {"topic": self.aws.iot_topic(), "sql": f"SELECT * FROM '{self.aws.iot_topic()}'",
                      "function": self.aws.function(str(Function.DISPATCHER))},
                     needs=[dispatcher], produces=[Output.IOT_ENDPOINT])
            for d in devices:
                self.add("aws", "L1", f"device-{d.id}", "iot-device", self.aws.iot_thing(d.id),
                         {"device_id": d.id, "policy_name": self.aws.iot_policy(d.id), "topic": self.aws.iot_topic()},
                         needs=["aws/setup/resource-group"], produces=[device_credentials_output(d.id)])
        elif p == "azure":
            az = self.spec.clouds.azure
            hub = self.add("azure", "L1", "iot-hub", "iot-hub", self.az.iot_hub(),
                           {"resource_group": self.az.resource_group(), "location": az.iothub_region,
                            "sku": "S1", "capacity": 1},
                           needs=["azure/setup/resource-group"], produces=[Output.IOT_HUB_SERVICE_CONNECTION_STRING])
            roles = self.add("azure", "L1", "iot-hub-role-assignment", "role-assignment",
                             f"{self.az.identity()}@{hub.name}",
                             {"scope": {"kind": "iot-hub", "name": hub.name},
                              "role_definition_ids": [ROLE_IOT_HUB_DATA_CONTRIBUTOR, ROLE_IOT_HUB_REGISTRY_CONTRIBUTOR],
                              "principal_type": "ServicePrincipal"},
                             needs=[hub.id, "azure/setup/identity"])
            self.wire(Output.AZURE_IDENTITY_PRINCIPAL_ID, roles.id, Setting.PRINCIPAL_ID)
            app = self.function("azure", "L1", Function.DISPATCHER, environment=env)
            if target == Function.PROCESSOR:
                self.wire_processor("azure", app)
            topic = self.add("azure", "L1", "iot-hub-events", "eventgrid-system-topic", self.az.iot_system_topic(),
                             {"resource_group": self.az.resource_group(), "location": az.iothub_region,
                              "source": {"kind": "iot-hub", "name": hub.name},
                              "topic_type": "Microsoft.Devices.IoTHubs"},
                             needs=[hub.id])
            self.add("azure", "L1", "dispatcher-subscription", "event-subscription",
                     self.az.event_subscription("dispatcher"),
                     {"system_topic": topic.name, "function_app": self.az.function_app("L1"),
                      "function": str(Function.DISPATCHER),
                      "included_event_types": ["Microsoft.Devices.DeviceTelemetry"]},
                     needs=[topic.id, app])
            for d in devices:
                self.add("azure", "L1", f"device-{d.id}", "iot-device", self.az.iot_device(d.id),
                         {"device_id": d.id, "hub": hub.name, "auth": "sas"},
                         needs=[hub.id], produces=[device_credentials_output(d.id)])
        else:
            topic_id = self.add("gcp", "L1", "telemetry-topic", "pubsub-topic", self.gcp.telemetry_topic(),
                                {"project_id": self.spec.clouds.gcp.project_id}, needs=["gcp/setup/service-account"]).id
            dispatcher = self.function("gcp", "L1", Function.DISPATCHER, environment=env, needs=[topic_id],
                                       extra={"topic": self.gcp.telemetry_topic()})
            if target == Function.PROCESSOR:
                self.wire_processor("gcp", dispatcher)
            else:
                self.wire(Output.CONNECTOR_URL, dispatcher, Setting.CONNECTOR_URL)
            for d in devices:
                self.add("gcp", "L1", f"device-{d.id}", "iot-device", f"{self.gcp.telemetry_topic()}/{d.id}",
                         {"device_id": d.id, "topic": self.gcp.telemetry_topic()},
                         needs=[topic_id], produces=[device_credentials_output(d.id)])
        if target == Function.CONNECTOR:
            connector = self.function(p, "L1", Function.CONNECTOR,
                                      produces=[Output.CONNECTOR_URL] if p == "gcp" else ())
            self.wire(Output.INGESTION_URL, connector, Setting.REMOTE_INGESTION_URL)
            self.wire_token(connector, receiver=False)

    def layer_2(self) -> None:
        p = self.placement["L2"]
        opts = self.spec.options
        hot = self.placement["L3_hot"]
        devices = self.spec.devices
        # Feedback publishes back through the L1 device channel of its own cloud (IoT Core data
        # endpoint, IoT Hub device twin); GCP has no device channel to publish to.
        feedback = opts.return_feedback_to_device and self.placement["L1"] == p and p != "gcp"
        if opts.return_feedback_to_device and not feedback:
            self.notes.append("event feedback to devices needs L1 and L2 on the same cloud (aws or azure); "
                              "it is not planned")
        # Processors
        if p == "aws":
            for d in devices:
                # Resource ids are prefixed by kind (`processor-`, `event-action-`) so no device
                # id or user function name can collide with another resource.
                self.function("aws", "L2", Function.PROCESSOR, short=f"processor-{d.id}",
                              cloud_name=self.aws.function(f"{d.id}-processor"), extra={"device_id": d.id})
        elif p == "azure":
            app = self.function("azure", "L2", Function.PROCESSOR, produces=[Output.PROCESSOR_URL, Output.PROCESSOR_KEY])
            self.drafts[app].config["processors"] = [d.id for d in devices]
        else:
            proc = self.function("gcp", "L2", Function.PROCESSOR, produces=[Output.PROCESSOR_URL],
                                 extra={"processors": [d.id for d in devices]})
            self.wire(Output.PERSISTER_URL, proc, Setting.PERSISTER_URL)
        # Persister
        # The persister derives its twin duty from DIGITAL_TWIN_INFO.providers with
        # contracts.twin_update_path; the config states it too so providers and tests can see it.
        persister = self.function(p, "L2", Function.PERSISTER,
                                  environment={Setting.USE_EVENT_CHECKING: _flag(opts.use_event_checking)},
                                  produces=[Output.PERSISTER_URL] if p == "gcp" else (),
                                  extra={"twin_update": str(self.path)})
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
        # Event checking, workflows, feedback, event actions
        if opts.use_event_checking:
            rules = json.dumps([e.model_dump(by_alias=True, exclude_none=True) for e in self.spec.events],
                               sort_keys=True, separators=(",", ":"))
            checker = self.function(p, "L2", Function.EVENT_CHECKER,
                                    environment={Setting.EVENT_RULES: rules, Setting.USE_FEEDBACK: _flag(feedback)},
                                    produces=[Output.EVENT_CHECKER_URL] if p == "gcp" else ())
            if p == "gcp":
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
                if p == "aws":
                    self.add("aws", "L2", "lambda-chain", "step-function", self.aws.state_machine(),
                             {"definition": "state_machines/aws_step_function.json"},
                             needs=["aws/setup/resource-group"], produces=[Output.LAMBDA_CHAIN_STATE_MACHINE_ARN])
                    self.wire(Output.LAMBDA_CHAIN_STATE_MACHINE_ARN, checker, Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN)
                elif p == "azure":
                    self.add("azure", "L2", "logic-app", "logic-app", self.az.logic_app(),
                             {"resource_group": self.az.resource_group(), "location": self.spec.clouds.azure.region,
                              "definition": "state_machines/azure_logic_app.json"},
                             needs=["azure/setup/resource-group"], produces=[Output.LOGIC_APP_TRIGGER_URL])
                    self.wire(Output.LOGIC_APP_TRIGGER_URL, checker, Setting.LOGIC_APP_TRIGGER_URL)
                else:
                    self.add("gcp", "L2", "event-workflow", "workflow", self.gcp.workflow(),
                             {"definition": "state_machines/google_cloud_workflow.json"},
                             needs=["gcp/setup/service-account"], produces=[Output.WORKFLOW_NAME])
                    self.wire(Output.WORKFLOW_NAME, checker, Setting.WORKFLOW_NAME)
        if feedback:
            fb = self.function(p, "L2", Function.EVENT_FEEDBACK)
            if p == "aws":
                self.wire(Output.IOT_ENDPOINT, fb, Setting.IOT_ENDPOINT)
            else:
                self.wire(Output.IOT_HUB_SERVICE_CONNECTION_STRING, fb, Setting.IOT_HUB_SERVICE_CONNECTION_STRING)
        seen: set[str] = set()
        for index, event in enumerate(self.spec.events):
            action = event.action
            if not action.auto_deploy or action.type not in ("lambda", "function"):
                continue
            for field_name, fname in (("functionName", action.function_name), ("functionNameB", action.function_name_b)):
                if fname is None or fname in seen:
                    continue
                seen.add(fname)
                extra = {"user_function": fname, "path_to_code": action.path_to_code}
                if p == "aws":
                    rid = self.function("aws", "L2", Function.PROCESSOR, short=f"event-action-{fname}",
                                        cloud_name=self.aws.event_action(fname),
                                        extra={**extra, "package": "event-action"})
                    self.user_named[rid] = f"events[{index}].action.{field_name}"
                elif p == "azure":
                    # Prefixed so a user function can never clash with a built-in function name.
                    self.function("azure", "L2", Function.PROCESSOR, short=f"event-action-{fname}",
                                  extra={**extra, "package": "event-action"})
                else:
                    self.function("gcp", "L2", Function.PROCESSOR, short=f"event-action-{fname}",
                                  extra={**extra, "package": "event-action"})

    def layer_3_hot(self) -> None:
        p = self.placement["L3_hot"]
        cold = self.placement["L3_cold"]
        if p == "aws":
            self.add("aws", "L3_hot", "hot-table", "dynamodb-table", self.aws.hot_table(),
                     {"hash_key": str(StorageKey.PARTITION), "range_key": str(StorageKey.SORT),
                      "billing_mode": "PAY_PER_REQUEST", "region": self.spec.clouds.aws.region},
                     needs=["aws/setup/resource-group"], produces=[Output.DYNAMODB_TABLE_NAME])
        elif p == "azure":
            acct = self.add("azure", "L3_hot", "cosmos-account", "cosmos-account", self.az.cosmos_account(),
                            {"resource_group": self.az.resource_group(), "location": self.spec.clouds.azure.region,
                             "capabilities": ["EnableServerless"], "consistency": "Session"},
                            needs=["azure/setup/resource-group"],
                            produces=[Output.COSMOS_DB_ENDPOINT, Output.COSMOS_DB_KEY])
            self.add("azure", "L3_hot", "cosmos-container", "cosmos-container", self.az.COSMOS_CONTAINER,
                     {"account": acct.name, "database": self.az.COSMOS_DATABASE,
                      "partition_key_path": COSMOS_PARTITION_KEY_PATH, "default_ttl": -1},
                     needs=[acct.id], produces=[Output.COSMOS_DB_DATABASE, Output.COSMOS_DB_CONTAINER])
        else:
            self.add("gcp", "L3_hot", "firestore", "firestore", self.gcp.firestore_database(),
                     {"project_id": self.spec.clouds.gcp.project_id, "location": self.spec.clouds.gcp.region,
                      "collection": self.gcp.hot_collection()},
                     needs=["gcp/setup/service-account"],
                     produces=[Output.FIRESTORE_DATABASE, Output.FIRESTORE_COLLECTION])
        if hot_reader_layer(self.placement) == Layer.L3_HOT:
            l5_local = self.placement["L5"] == p
            l4_local = self.placement["L4"] == p and p in PULL_TWIN_PROVIDERS
            for fn, arn in ((Function.HOT_READER, Output.HOT_READER_FUNCTION_ARN),
                            (Function.HOT_READER_LAST_ENTRY, Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN)):
                if fn == Function.HOT_READER_LAST_ENTRY and not l4_local:
                    continue  # only TwinMaker reads the latest entry; Grafana queries ranges
                url = Output.LOCAL_HOT_READER_URL if (fn == Function.HOT_READER and l5_local) else None
                produces = [arn] if l4_local else []
                host = self.function(p, "L3_hot", fn, public_url=url, produces=produces)
                self.wire_store(host, "hot", p)
                if url is not None:
                    self.wire_token(host, receiver=True)
        mover = self.function(p, "L3_hot", Function.HOT_TO_COLD_MOVER,
                              extra={"schedule": "0 0 0 * * *"} if p == "azure" else None)
        self.wire_store(mover, "hot", p)
        if cold == p:
            self.wire_store(mover, "cold", p)
        else:
            self.wire(Output.COLD_WRITER_URL, mover, Setting.REMOTE_COLD_WRITER_URL)
            self.wire_token(mover, receiver=False)
        self.schedule(p, "L3_hot", Function.HOT_TO_COLD_MOVER, mover, "cron(0 12 * * ? *)", "0 12 * * *")

    def schedule(self, p: str, layer: str, fn: Function, mover: str, aws_cron: str, gcp_cron: str) -> None:
        """AWS and GCP movers get their own schedule resource; Azure uses a timer trigger."""
        if p == "aws":
            self.add("aws", layer, f"{fn}-schedule", "schedule", self.aws.schedule_rule(str(fn)),
                     {"expression": aws_cron, "function": self.aws.function(str(fn))}, needs=[mover])
        elif p == "gcp":
            self.add("gcp", layer, f"{fn}-schedule", "scheduler-job", self.gcp.schedule(str(fn)),
                     {"cron": gcp_cron, "function": self.gcp.function(str(fn))}, needs=[mover])

    def layer_3_cold(self) -> None:
        p = self.placement["L3_cold"]
        archive = self.placement["L3_archive"]
        if p == "aws":
            self.add("aws", "L3_cold", "cold-bucket", "s3-bucket", self.aws.cold_bucket(),
                     {"storage_class": "STANDARD_IA", "region": self.spec.clouds.aws.region},
                     needs=["aws/setup/resource-group"], produces=[Output.COLD_S3_BUCKET_NAME])
        elif p == "azure":
            self.add("azure", "L3_cold", "cold-container", "blob-container", self.az.COLD_CONTAINER,
                     {"storage_account": self.az.storage_account(), "access_tier": "Cool", "public_access": "None"},
                     needs=["azure/setup/storage-account"], produces=[Output.COLD_STORAGE_CONTAINER])
        else:
            self.add("gcp", "L3_cold", "cold-bucket", "gcs-bucket", self.gcp.cold_bucket(),
                     {"project_id": self.spec.clouds.gcp.project_id, "location": self.spec.clouds.gcp.region,
                      "storage_class": "NEARLINE"},
                     needs=["gcp/setup/service-account"], produces=[Output.COLD_GCS_BUCKET])
        mover = self.function(p, "L3_cold", Function.COLD_TO_ARCHIVE_MOVER,
                              extra={"schedule": "0 0 0 * * *"} if p == "azure" else None)
        self.wire_store(mover, "cold", p)
        if archive == p:
            self.wire_store(mover, "archive", p)
        else:
            self.wire(Output.ARCHIVE_WRITER_URL, mover, Setting.REMOTE_ARCHIVE_WRITER_URL)
            self.wire_token(mover, receiver=False)
        self.schedule(p, "L3_cold", Function.COLD_TO_ARCHIVE_MOVER, mover, "cron(0 18 * * ? *)", "0 18 * * *")

    def layer_3_archive(self) -> None:
        p = self.placement["L3_archive"]
        if p == "aws":
            self.add("aws", "L3_archive", "archive-bucket", "s3-bucket", self.aws.archive_bucket(),
                     {"storage_class": "DEEP_ARCHIVE", "region": self.spec.clouds.aws.region},
                     needs=["aws/setup/resource-group"], produces=[Output.ARCHIVE_S3_BUCKET_NAME])
        elif p == "azure":
            self.add("azure", "L3_archive", "archive-container", "blob-container", self.az.ARCHIVE_CONTAINER,
                     {"storage_account": self.az.storage_account(), "access_tier": "Archive", "public_access": "None"},
                     needs=["azure/setup/storage-account"], produces=[Output.ARCHIVE_STORAGE_CONTAINER])
        else:
            self.add("gcp", "L3_archive", "archive-bucket", "gcs-bucket", self.gcp.archive_bucket(),
                     {"project_id": self.spec.clouds.gcp.project_id, "location": self.spec.clouds.gcp.region,
                      "storage_class": "ARCHIVE"},
                     needs=["gcp/setup/service-account"], produces=[Output.ARCHIVE_GCS_BUCKET])

    def layer_4(self) -> None:
        p = self.placement["L4"]
        hot = self.placement["L3_hot"]
        if p == "aws":
            bucket = self.add("aws", "L4", "twinmaker-bucket", "s3-bucket", self.aws.twinmaker_bucket(),
                              {"storage_class": "STANDARD", "region": self.spec.clouds.aws.region},
                              needs=["aws/setup/resource-group"])
            ws = self.add("aws", "L4", "twinmaker-workspace", "twinmaker-workspace", self.aws.twinmaker_workspace(),
                          {"role_name": self.aws.role("twinmaker"), "bucket": bucket.name,
                           "region": self.spec.clouds.aws.region},
                          needs=[bucket.id], produces=[Output.TWINMAKER_WORKSPACE_NAME])
            if hot == "aws":
                reader, last = Output.HOT_READER_FUNCTION_ARN, Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN
            else:
                reader, last = Output.DT_READER_FUNCTION_ARN, Output.DT_READER_LAST_ENTRY_FUNCTION_ARN
                for fn, url_out, setting, arn in (
                    (Function.DT_READER, Output.HOT_READER_URL, Setting.REMOTE_READER_URL, reader),
                    (Function.DT_READER_LAST_ENTRY, Output.HOT_READER_LAST_ENTRY_URL,
                     Setting.REMOTE_READER_LAST_ENTRY_URL, last),
                ):
                    host = self.function("aws", "L4", fn, produces=[arn])
                    self.wire(url_out, host, setting)
                    self.wire_token(host, receiver=False)
            component_ids: list[str] = []
            for d in self.spec.devices:
                ct = self.add("aws", "L4", f"component-type-{d.id}", "twinmaker-component-type",
                              self.aws.component_type(d.id),
                              {"workspace": ws.name, "device_id": d.id,
                               "properties": [{"name": prop.name, "dataType": prop.data_type, "isTimeSeries": True}
                                              for prop in d.properties],
                               "constProperties": [{"name": c.name, "dataType": c.data_type, "value": c.value}
                                                   for c in d.const_properties]},
                              needs=[ws.id])
                self.wire(reader, ct.id, Setting.DATA_READER_FUNCTION_ARN)
                self.wire(last, ct.id, Setting.LAST_ENTRY_READER_FUNCTION_ARN)
                component_ids.append(ct.id)
            tree = [n.model_dump(by_alias=True, exclude_none=True) for n in (self.spec.hierarchy.aws or [])]
            self.add("aws", "L4", "twinmaker-entities", "twinmaker-entities", ws.name,
                     {"workspace": ws.name, "entities": tree}, needs=[ws.id, *component_ids])
        else:
            az = self.spec.clouds.azure
            adt = self.add("azure", "L4", "digital-twins", "digital-twins", self.az.digital_twins(),
                           {"resource_group": self.az.resource_group(), "location": az.digital_twin_region},
                           needs=["azure/setup/resource-group"], produces=[Output.ADT_INSTANCE_URL])
            role = self.add("azure", "L4", "adt-role-assignment", "role-assignment", f"{self.az.identity()}@{adt.name}",
                            {"scope": {"kind": "digital-twins", "name": adt.name},
                             "role_definition_ids": [ROLE_ADT_DATA_OWNER], "principal_type": "ServicePrincipal"},
                            needs=[adt.id, "azure/setup/identity"])
            self.wire(Output.AZURE_IDENTITY_PRINCIPAL_ID, role.id, Setting.PRINCIPAL_ID)
            hierarchy = self.spec.hierarchy.azure
            models = self.add("azure", "L4", "dtdl-models", "dtdl-models", adt.name,
                              {"models": list(hierarchy.models) if hierarchy else []},
                              # The deployer writes through the data plane: its role must exist first.
                              needs=[adt.id, role.id])
            self.add("azure", "L4", "twin-graph", "twin-graph", adt.name,
                     {"twins": [t.model_dump(by_alias=True, exclude_none=True) for t in hierarchy.twins]
                      if hierarchy else [],
                      "relationships": [{"$dtId": r.source_id, "$relationshipId": r.stable_id(),
                                         "$targetId": r.target_id, "$relationshipName": r.name}
                                        for r in hierarchy.relationships] if hierarchy else []},
                     needs=[models.id])
            if self.path == TwinUpdatePath.EVENT_GRID_ADT_UPDATER:
                app = self.function("azure", "L4", Function.ADT_UPDATER, needs=[role.id])
                self.wire(Output.ADT_INSTANCE_URL, app, Setting.ADT_INSTANCE_URL)
                self.add("azure", "L4", "adt-updater-subscription", "event-subscription",
                         self.az.event_subscription("adt-updater"),
                         {"system_topic": self.az.iot_system_topic(), "function_app": self.az.function_app("L4"),
                          "function": str(Function.ADT_UPDATER),
                          "included_event_types": ["Microsoft.Devices.DeviceTelemetry"]},
                         needs=["azure/L1/iot-hub-events", app])

    def layer_5(self) -> None:
        p = self.placement["L5"]
        if p == "aws":
            graf = self.add("aws", "L5", "grafana", "grafana", self.aws.grafana_workspace(),
                            {"role_name": self.aws.role("grafana"), "account_access_type": "CURRENT_ACCOUNT",
                             "authentication_providers": ["AWS_SSO"], "permission_type": "CUSTOMER_MANAGED",
                             "region": self.spec.clouds.aws.region},
                            needs=["aws/setup/resource-group"], produces=[Output.GRAFANA_URL])
        else:
            graf = self.add("azure", "L5", "grafana", "grafana", self.az.grafana(),
                            {"resource_group": self.az.resource_group(), "location": self.spec.clouds.azure.region,
                             "sku": "Standard", "api_key": "Enabled"},
                            needs=["azure/setup/resource-group"], produces=[Output.GRAFANA_URL])
        ds = self.add(p, "L5", "grafana-datasource", "grafana-datasource", AzureNaming.GRAFANA_DATASOURCE,
                      {"grafana": graf.name, "type": "marcusolsson-json-datasource", "access": "proxy"},
                      needs=[graf.id])
        # The public reader when there is one (it serves a same-cloud datasource too), else the local one.
        url = Output.HOT_READER_URL if hot_reader_layer(self.placement) == Layer.L0 else Output.LOCAL_HOT_READER_URL
        self.wire(url, ds.id, Setting.DATASOURCE_URL)
        self.wire(Output.INTER_CLOUD_TOKEN, ds.id, Setting.DATASOURCE_TOKEN)

    # -- finishing -------------------------------------------------------------------------

    def check_cloud_names(self) -> None:
        """Two resources must never manage the same cloud object. Only a user-chosen name (an
        AWS event action is `{twin}-{functionName}`) can cause that; report it as a spec problem."""
        owner: dict[tuple[str, str], str] = {}
        problems: list[Problem] = []
        for d in self.drafts.values():
            if d.kind not in ("lambda", "cloud-function"):
                continue
            key = (d.provider, d.name)
            if key not in owner:
                owner[key] = d.id
                continue
            other = owner[key]
            user = d.id if d.id in self.user_named else other
            if user not in self.user_named:
                raise RuntimeError(f"{other} and {d.id} both manage {d.provider} function {d.name}")
            clash = other if user == d.id else d.id
            problems.append(Problem(self.user_named[user],
                                    f"the action's function would be named {d.name!r}, which the twin already "
                                    f"uses for {clash}; choose another function name"))
        if problems:
            raise SpecError(problems)

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
        for d in self.drafts.values():
            missing = [n for n in d.needs if n not in order]
            if missing:
                raise RuntimeError(f"{d.id} needs {missing}, which are not planned")
            needs = sorted({n for n in d.needs if n != d.id}, key=order.__getitem__)
            produces = list(dict.fromkeys(d.produces))
            if d.kind == "function-app":
                d.config["functions"] = sorted(d.config["functions"], key=lambda f: f["name"])
                d.config["app_settings"] = dict(sorted(d.config["app_settings"].items()))
            resources.append(Resource(d.id, d.layer, d.provider, d.kind, d.name, tuple(needs), tuple(produces), d.config))
        outputs = [PlannedOutput(name, r.id, is_secret_output(name)) for r in resources for name in r.produces]
        decisions = self.boundary_decisions(receivers)
        return Plan(self.twin, self.placement, resources, outputs, wires, self.path, decisions, self.notes)

    def boundary_decisions(self, receivers: Mapping[str, list[Function]]) -> list[BoundaryDecision]:
        out: list[BoundaryDecision] = []
        pl = self.placement
        for b in BOUNDARIES:
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


def _flag(value: bool) -> str:
    return "true" if value else "false"


def build_plan(spec: TwinSpec) -> Plan:
    """The resources, outputs and wires of `spec` (pure and deterministic).

    Raises `SpecError` if L4 or L5 is placed on gcp (GCP hosts neither); the loaders already
    reject such specs, so this only guards direct callers."""
    placement = placement_of(spec)
    problems = [Problem(f"providers.{LAYER_SLOTS[Layer(layer)]}", f"{layer} cannot run on gcp; choose aws or azure")
                for layer in ("L4", "L5") if placement[layer] == "gcp"]
    if problems:
        raise SpecError(problems)
    plan = _Builder(spec).build()
    plan.topological_order()
    return plan
