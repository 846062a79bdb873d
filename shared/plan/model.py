"""The plan's model: resources, the outputs they yield, the wires between them, and the graph
methods the engine walks (`topological_order`, `consumers_of`, `critical_path`).

A resource's `config` is its kind's typed configuration (`shared.resources`); its JSON form is
what crosses the Durable boundary (`to_json(include_config=True)`). Secrets never appear in a
config: they travel as secret outputs through wires and are filled in by the provider.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import LAYERS, TwinUpdatePath
from shared.resources import ResourceConfig
from shared.validation import Problem

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
    config: ResourceConfig = field(hash=False)
    """The desired configuration (the kind's model in `shared.resources`), never a secret."""

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
            out["config"] = self.config.to_json()
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
        code_problems: Iterable[Problem] = (),
    ) -> None:
        self.twin = twin
        self.placement: dict[str, str] = dict(placement)
        self.resources: tuple[Resource, ...] = tuple(resources)
        self.outputs: tuple[PlannedOutput, ...] = tuple(outputs)
        self.wires: tuple[Wire, ...] = tuple(wires)
        self.twin_update = twin_update
        self.boundaries: tuple[BoundaryDecision, ...] = tuple(boundaries)
        self.notes: tuple[str, ...] = tuple(notes)
        self.code_problems: tuple[Problem, ...] = tuple(code_problems)
        """Why the users' code cannot be deployed (a missing or broken folder), with paths."""
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
        # Google Cloud Workflows has no provider (nor a sandbox service) yet.
        workflows = [r.id for r in self.resources if r.provider == "gcp" and r.kind == "workflow"]
        if workflows:
            blockers.append(
                f"the notification workflow cannot be deployed on gcp yet ({', '.join(workflows)}); set "
                f"options.trigger_notification_workflow to false or place L2 on aws")
        blockers.extend(str(p) for p in self.code_problems)
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


