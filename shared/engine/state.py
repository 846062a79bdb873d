"""The `twin_state` entity's contract: its state, the payload of each operation, and the two rules
everything else relies on.

- `record_outputs` is the one place output versions are computed: a version moves only when the
  value changes. The entity uses it, and so does `deploy_twin` for the versions it announces while
  its records are still on their way to the entity (the twin's lock means no other writer).
- `desired_settings` says which consumers are *behind*: deployed consumers whose `applied` version
  of a wired output is older than the recorded one. A change not yet propagated is exactly that
  gap, kept in the state until a propagation closes it, so nothing recorded is ever dropped.

State (JSON at the boundary):
    resources: {id: ResourceRecord}    outputs: {name: OutputRecord}    wires: [Wire]
    lock: Lock | None                  twin: name
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shared.engine.plan import Wire
from shared.engine.types import Payload, Resource

ResourceState = Literal["deployed", "failed", "delete-failed"]


@dataclass(frozen=True)
class OutputValue(Payload):
    """An output as its producer yields it."""

    value: str
    secret: bool = False


@dataclass(frozen=True)
class OutputRecord(Payload):
    value: str
    version: int
    producer: str
    secret: bool = False


@dataclass(frozen=True)
class OutputVersion(Payload):
    version: int
    changed: bool


@dataclass(frozen=True)
class ResourceRecord(Payload):
    """A resource as recorded: the plan's node, where it stands, and what it holds.

    `applied` maps each output wired into this resource to the version it was last given;
    `op` is the operation that last touched it; `observed_at` the latest refresh reading."""

    layer: str = ""
    provider: str = ""
    kind: str = ""
    needs: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    state: ResourceState = "deployed"
    action: str | None = None
    op: str = ""
    error: str | None = None
    applied: dict[str, int] = field(default_factory=dict)
    observed_at: str = ""

    @classmethod
    def of(cls, resource: Resource, **fields: Any) -> ResourceRecord:
        return cls(layer=resource.layer, provider=resource.provider, kind=resource.kind, needs=resource.needs,
                   produces=resource.produces, config=resource.config, **fields)

    def resource(self, rid: str) -> Resource:
        return Resource(id=rid, layer=self.layer, provider=self.provider, kind=self.kind, needs=self.needs,
                        produces=self.produces, config=self.config)


@dataclass(frozen=True)
class Lock(Payload):
    instance: str
    operation: str = ""
    since: str = ""


@dataclass
class TwinState(Payload):
    twin: str = ""
    resources: dict[str, ResourceRecord] = field(default_factory=dict)
    outputs: dict[str, OutputRecord] = field(default_factory=dict)
    wires: tuple[Wire, ...] = ()
    lock: Lock | None = None

    def current_outputs(self, producer: str) -> dict[str, str]:
        """The recorded outputs of `producer` (a reconcile hint for its provider)."""
        return {n: o.value for n, o in self.outputs.items() if o.producer == producer}

    def secret_values(self) -> list[str]:
        return [o.value for o in self.outputs.values() if o.secret and o.value]


# --- the rules ---------------------------------------------------------------------------------

def record_outputs(outputs: dict[str, OutputRecord], producer: str,
                   new: Mapping[str, OutputValue]) -> dict[str, OutputVersion]:
    """Record `new` into `outputs` (in place): a version moves only when the value changes."""
    result: dict[str, OutputVersion] = {}
    for name, item in new.items():
        old = outputs.get(name)
        if old is not None and old.value == item.value:
            outputs[name] = replace(old, producer=producer, secret=item.secret or old.secret)
            result[name] = OutputVersion(old.version, False)
            continue
        version = old.version + 1 if old is not None else 1
        outputs[name] = OutputRecord(item.value, version, producer, item.secret)
        result[name] = OutputVersion(version, True)
    return result


@dataclass(frozen=True)
class Desired(Payload):
    """What a consumer should hold: every wired setting whose output is recorded, and the output
    versions those values are."""

    settings: dict[str, str | None] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def desired_settings(state: TwinState, changed: Collection[str] | None = None,
                     only_behind: bool = True) -> dict[str, Desired]:
    """Per deployed consumer (of a `changed` output; of any when None): its wired settings
    (level-triggered: all of them, from the latest versions). With `only_behind`, consumers that
    already hold every latest version are left out."""
    touched = None if changed is None else set(changed)
    wanted: dict[str, tuple[dict[str, str | None], dict[str, int]]] = {}
    for wire in state.wires:
        entry = state.resources.get(wire.consumer)
        if entry is None or entry.state != "deployed":
            continue
        if touched is not None and wire.output not in touched:
            continue
        wanted.setdefault(wire.consumer, ({}, {}))
    for wire in state.wires:
        output = state.outputs.get(wire.output)
        if wire.consumer in wanted and output is not None:
            settings, versions = wanted[wire.consumer]
            settings[wire.setting] = output.value
            versions[wire.output] = output.version
    result: dict[str, Desired] = {}
    for consumer, (settings, versions) in sorted(wanted.items()):
        if not settings:
            continue
        applied = state.resources[consumer].applied
        if only_behind and all(applied.get(o) == v for o, v in versions.items()):
            continue
        result[consumer] = Desired(settings, versions)
    return result


def behind(state: TwinState) -> list[str]:
    """Consumers holding an older version of some wired output than the one recorded."""
    return list(desired_settings(state))


# --- operation payloads ------------------------------------------------------------------------

@dataclass(frozen=True)
class AcquireRequest(Payload):
    instance: str
    operation: str
    since: str = ""
    replace: str | None = None


@dataclass(frozen=True)
class AcquireResult(Payload):
    """Refused: who holds the lock. Acquired: the state as of then (saves the holder a `get`)."""

    acquired: bool
    holder: str = ""
    operation: str = ""
    state: TwinState | None = None


@dataclass(frozen=True)
class ReleaseRequest(Payload):
    """Unlock, unless consumers are behind: then the holder must apply them first (`behind`
    answers which). `force` unlocks regardless (a twin being torn down)."""

    instance: str
    force: bool = False


@dataclass(frozen=True)
class ReleaseResult(Payload):
    released: bool
    behind: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanWires(Payload):
    twin: str
    wires: tuple[Wire, ...] = ()


@dataclass(frozen=True)
class RecordedResource(Payload):
    """A finished resource and the outputs it yielded (applied versions merge with the recorded)."""

    id: str
    record: ResourceRecord
    outputs: dict[str, OutputValue] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordResources(Payload):
    entries: tuple[RecordedResource, ...] = ()


@dataclass(frozen=True)
class MarkResource(Payload):
    """Only the standing of a recorded resource changes (e.g. a deletion that failed)."""

    id: str
    state: ResourceState
    error: str | None = None
    op: str = ""


@dataclass(frozen=True)
class RecordOutput(Payload):
    name: str
    value: str
    producer: str
    secret: bool = False


@dataclass(frozen=True)
class RecordApplied(Payload):
    """{consumer: {output: version}}: what each consumer now holds."""

    applied: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ObserveOutputs(Payload):
    """A refresh's reading of one producer, taken at `observed_at` (ISO-8601 UTC)."""

    producer: str
    observed_at: str
    outputs: dict[str, OutputValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed(Payload):
    stale: bool
    outputs: dict[str, OutputVersion] = field(default_factory=dict)


@dataclass(frozen=True)
class ForgetResource(Payload):
    id: str


@dataclass(frozen=True)
class NoInput(Payload):
    """Operations without input (`get`, `clear`)."""
