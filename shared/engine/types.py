"""Small typed values that cross the activity boundary.

Durable passes activity inputs and results as JSON, so each type converts to and from a plain
dict (`to_dict` / `from_dict`); orchestrators only ever hold the dict form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["created", "updated", "unchanged", "deleted", "absent"]
ACTIONS: tuple[str, ...] = ("created", "updated", "unchanged", "deleted", "absent")


@dataclass(frozen=True)
class Resource:
    """One node of the plan, as a provider sees it (the plan's resource, JSON-only)."""

    id: str
    layer: str
    provider: str
    kind: str
    needs: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resource:
        return cls(
            id=str(data["id"]),
            layer=str(data.get("layer", "")),
            provider=str(data["provider"]),
            kind=str(data["kind"]),
            needs=tuple(data.get("needs") or ()),
            produces=tuple(data.get("produces") or ()),
            config=dict(data.get("config") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["needs"] = list(self.needs)
        out["produces"] = list(self.produces)
        return out


@dataclass(frozen=True)
class Pending:
    """A long operation still running in the cloud: poll it again after `poll_after_seconds`."""

    token: dict[str, Any]
    poll_after_seconds: float = 5.0
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pending:
        return cls(
            token=dict(data.get("token") or {}),
            poll_after_seconds=float(data.get("poll_after_seconds", 5.0)),
            description=str(data.get("description", "")),
        )


@dataclass(frozen=True)
class EnsureResult:
    """What `ensure`/`poll`/`delete` report: done (with outputs and the action) or pending."""

    action: Action = "unchanged"
    outputs: dict[str, str] = field(default_factory=dict)
    pending: Pending | None = None

    @property
    def done(self) -> bool:
        return self.pending is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "outputs": dict(self.outputs),
            "pending": None if self.pending is None else asdict(self.pending),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsureResult:
        pending = data.get("pending")
        return cls(
            action=data.get("action", "unchanged"),
            outputs={str(k): str(v) for k, v in (data.get("outputs") or {}).items()},
            pending=None if pending is None else Pending.from_dict(pending),
        )


@dataclass(frozen=True)
class ReadResult:
    """What exists now: `exists`, the outputs it would yield and provider-specific details."""

    exists: bool
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResourceCall:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin": self.twin,
            "resource": self.resource.to_dict(),
            "settings": dict(self.settings),
            "current": dict(self.current),
            "pending": None if self.pending is None else asdict(self.pending),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResourceCall:
        pending = data.get("pending")
        return cls(
            twin=str(data["twin"]),
            resource=Resource.from_dict(data["resource"]),
            settings=dict(data.get("settings") or {}),
            current={str(k): str(v) for k, v in (data.get("current") or {}).items()},
            pending=None if pending is None else Pending.from_dict(pending),
        )


@dataclass(frozen=True)
class TwinEvent:
    """One CloudEvent to publish: `type`, the twin (source `/twins/{twin}`), data, and an id."""

    type: str
    twin: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinEvent:
        return cls(type=str(data["type"]), twin=str(data["twin"]), id=str(data["id"]), data=dict(data.get("data") or {}))
