"""What the orchestrations take and return: the engine's options and each orchestration's input
and result, converted at the boundary (the HTTP API and the event triggers start them with
`to_dict()`; each orchestrator reads its input with `from_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any

from pydantic import BeforeValidator

from shared.engine.plan import EnginePlan
from shared.engine.types import EnsureResult, Payload, ResourceCall


@dataclass(frozen=True)
class EngineOptions:
    """Engine knobs, passed in the orchestration input (the HTTP starter reads app settings)."""

    max_parallel: int = 8
    retry_attempts: int = 6
    retry_first_seconds: float = 2.0
    retry_max_seconds: float = 60.0
    poll_timeout_seconds: float = 1800.0
    lock_wait_seconds: float = 120.0
    grace_seconds: float = 30.0
    drain_rounds: int = 20
    batch_threshold: int = 16
    batch_size: int = 100

    @classmethod
    def from_dict(cls, data: Any) -> EngineOptions:
        """Lenient on purpose (the operator's `TWIN_ENGINE_OPTIONS`): unknown keys and values that
        are not numbers are ignored, so a typo never stops the engine."""
        if isinstance(data, EngineOptions):
            return data
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in (data or {}).items() if isinstance(data, dict) else ():
            if key in known and isinstance(value, int | float) and not isinstance(value, bool):
                values[key] = int(value) if known[key] in ("int", int) else float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Options = Annotated[EngineOptions, BeforeValidator(EngineOptions.from_dict)]


@dataclass(frozen=True)
class DeployInput(Payload):
    """`deploy_twin`: the plan (built once, by the caller), and whether to delete recorded
    resources the plan no longer has. `replace` names a stale lock holder that may be replaced."""

    plan: EnginePlan
    options: Options = field(default_factory=EngineOptions)
    replace: str | None = None
    prune: bool = True


@dataclass(frozen=True)
class TwinOperation(Payload):
    """`destroy_twin`, `rotate_token`."""

    twin: str
    options: Options = field(default_factory=EngineOptions)
    replace: str | None = None


@dataclass(frozen=True)
class PropagateInput(Payload):
    """`propagate_outputs`: consumers of `outputs` (every consumer when None) that are behind."""

    twin: str
    outputs: tuple[str, ...] | None = None
    options: Options = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class RefreshInput(Payload):
    """`refresh_outputs`: read `resources` (every producer when None)."""

    twin: str
    resources: tuple[str, ...] | None = None
    reason: str = ""
    options: Options = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class ResourceStep(Payload):
    """`resource_apply` / `resource_remove`: one resource."""

    call: ResourceCall
    options: Options = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class ResourceBatch(Payload):
    """`resources_batch`: several independent resources of one kind, applied or removed."""

    operation: str
    calls: tuple[ResourceCall, ...] = ()
    options: Options = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class BatchResult(Payload):
    results: dict[str, EnsureResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Propagation(Payload):
    """Consumers written, and consumers found current (by a read, or by their applied versions)."""

    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def __add__(self, other: Propagation) -> Propagation:
        return Propagation(tuple(sorted({*self.changed, *other.changed})),
                           tuple(sorted({*self.unchanged, *other.unchanged} - {*other.changed, *self.changed})))


@dataclass(frozen=True)
class PropagationCounts(Payload):
    changed: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class DeployResult(Payload):
    twin: str
    summary: dict[str, int]
    resources: int
    propagation: PropagationCounts
    operation: str = "deploy"


@dataclass(frozen=True)
class DestroyResult(Payload):
    twin: str
    summary: dict[str, int]
    operation: str = "destroy"


@dataclass(frozen=True)
class PropagateResult(Payload):
    twin: str
    operation: str = "propagate_outputs"
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    deferred_to: str | None = None


@dataclass(frozen=True)
class RefreshResult(Payload):
    twin: str
    operation: str = "refresh_outputs"
    read: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # output names with a new version
    missing: tuple[str, ...] = ()  # producers that no longer exist
    failed: tuple[str, ...] = ()  # producers that could not be read
    propagation: Propagation | None = None


@dataclass(frozen=True)
class RotateResult(Payload):
    twin: str
    version: int
    receivers: int
    senders: int
    operation: str = "rotate"
