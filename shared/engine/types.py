"""Small typed values that cross the activity boundary.

Durable passes activity inputs and results as JSON. Each type converts to and from that JSON at
the boundary (`to_dict` / `from_dict`, done by pydantic from the dataclass's own fields, so a new
field needs no hand-written conversion); everything between the boundaries holds the typed value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Self

from pydantic import TypeAdapter

Action = Literal["created", "updated", "unchanged", "deleted", "absent"]
ACTIONS: tuple[str, ...] = ("created", "updated", "unchanged", "deleted", "absent")


_adapters: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type) -> TypeAdapter[Any]:
    adapter = _adapters.get(cls)
    if adapter is None:  # built once per type (a race builds two equal adapters: harmless)
        adapter = _adapters[cls] = TypeAdapter(cls)
    return adapter


class Payload:
    """JSON conversion for a payload dataclass (unknown keys are ignored, so older JSON still reads)."""

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        value: Self = _adapter(cls).validate_python(data)
        return value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json")
        return data


@dataclass(frozen=True)
class Resource(Payload):
    """One node of the plan, as a provider sees it (the plan's resource, JSON-only)."""

    id: str
    layer: str
    provider: str
    kind: str
    needs: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending(Payload):
    """A long operation still running in the cloud: poll it again after `poll_after_seconds`."""

    token: dict[str, Any]
    poll_after_seconds: float = 5.0
    description: str = ""


@dataclass(frozen=True)
class EnsureResult(Payload):
    """What `ensure`/`poll`/`delete` report: done (with outputs and the action) or pending.

    `polls` counts the polls the engine made before the result (set by the orchestrator)."""

    action: Action = "unchanged"
    outputs: dict[str, str] = field(default_factory=dict)
    pending: Pending | None = None
    polls: int = 0

    @property
    def done(self) -> bool:
        return self.pending is None


@dataclass(frozen=True)
class ReadResult(Payload):
    """What exists now: `exists`, the outputs it would yield and provider-specific details."""

    exists: bool
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation(Payload):
    """`resource_read`'s result: a `ReadResult` stamped with when it was taken (UTC ISO-8601)."""

    exists: bool
    observed_at: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceCall(Payload):
    """Input of the resource activities: the resource, the twin, and the wired settings known now.

    `settings` holds the consumer settings whose outputs are already recorded (values may be
    secret); `current` the outputs recorded for this resource by an earlier run (a reconcile
    hint, e.g. a generated secret is kept); `pending` is set for `resource_poll`.
    """

    twin: str
    resource: Resource
    settings: dict[str, str | None] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    pending: Pending | None = None


@dataclass(frozen=True)
class SettingsApplied(Payload):
    """`settings_apply`'s result: whether the consumer's settings were written; `pending` while the
    cloud still rolls them out (a new revision): `settings_apply` is called again with it, as
    `resource_poll` is, until they serve."""

    changed: bool
    pending: Pending | None = None


@dataclass(frozen=True)
class SecretRequest(Payload):
    """`secret_generate`'s input: whose secret output to generate."""

    twin: str
    output: str


@dataclass(frozen=True)
class TwinEvent(Payload):
    """One CloudEvent to publish: `type`, the twin (source `/twins/{twin}`), data, and an id."""

    type: str
    twin: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventBatch(Payload):
    """`events_publish`'s input."""

    events: tuple[TwinEvent, ...] = ()
