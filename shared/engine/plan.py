"""The engine's view of a plan: the typed value `deploy_twin` walks.

`shared.plan.build_plan(spec)` is the single source of the resource graph; `engine_plan_of` turns
its result into an `EnginePlan` (twin, resources, outputs, wires, and problems: why the plan cannot
be deployed, e.g. a kind no provider implements yet). The HTTP API builds it once per
deployment and passes it to `deploy_twin` as the orchestration's input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.engine.errors import PermanentError
from shared.engine.types import Payload, Resource


@dataclass(frozen=True)
class PlanOutput(Payload):
    name: str
    producer: str
    secret: bool = False


@dataclass(frozen=True)
class Wire(Payload):
    """`output` (made by `producer`) goes into `consumer`'s setting `setting`."""

    output: str
    consumer: str
    setting: str
    producer: str = ""


@dataclass(frozen=True)
class EnginePlan(Payload):
    twin: str
    resources: tuple[Resource, ...] = ()
    outputs: tuple[PlanOutput, ...] = ()
    wires: tuple[Wire, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def secret_outputs(self) -> frozenset[str]:
        return frozenset(o.name for o in self.outputs if o.secret)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _plain(value: Any) -> Any:
    """JSON-only data (enums to their values, tuples to lists, models to dicts)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, str):
        return str(value)
    return value


def deploy_problems(plan: Any) -> list[str]:
    """Why this plan cannot be deployed (empty when it can)."""
    for attr in ("deploy_problems", "deployable", "undeployable_reasons"):
        method = getattr(plan, attr, None)
        if callable(method):
            result = method()
            if isinstance(result, bool):
                return [] if result else ["the plan is not deployable"]
            return [str(_get(p, "message", p)) for p in (result or [])]
    return []


def engine_plan_of(plan: Any) -> EnginePlan:
    """The engine plan of `shared.plan.build_plan`'s result."""
    twin = _get(plan, "twin")
    return EnginePlan(
        twin=str(_get(twin, "name", twin)),
        resources=tuple(
            Resource(id=str(_get(r, "id")), layer=str(_get(r, "layer")), provider=str(_get(r, "provider")),
                     kind=str(_get(r, "kind")), needs=tuple(str(n) for n in _get(r, "needs", ()) or ()),
                     produces=tuple(str(n) for n in _get(r, "produces", ()) or ()),
                     config=_plain(_get(r, "config", {}) or {}))
            for r in _get(plan, "resources", [])
        ),
        outputs=tuple(PlanOutput(str(_get(o, "name")), str(_get(o, "producer")), bool(_get(o, "secret", False)))
                      for o in _get(plan, "outputs", [])),
        wires=tuple(Wire(output=str(_get(w, "output")), consumer=str(_get(w, "consumer")),
                         setting=str(_get(w, "setting")), producer=str(_get(w, "producer", "")))
                    for w in _get(plan, "wires", [])),
        problems=tuple(deploy_problems(plan)),
    )


def build_engine_plan(spec_data: Any) -> EnginePlan:
    """Validate the spec and build its plan; an invalid spec is a permanent error with every path."""
    from shared.loaders import spec_problems
    from shared.plan import build_plan

    spec, problems = spec_problems(spec_data)
    if spec is None or problems:
        raise PermanentError("invalid spec: " + "; ".join(f"{p.path}: {p.message}" for p in problems))
    return engine_plan_of(build_plan(spec))


def plan_to_engine(plan: Any) -> dict[str, Any]:
    """`engine_plan_of` as JSON, what crosses the Durable boundary."""
    return engine_plan_of(plan).to_dict()


def engine_plan(spec_data: Any) -> dict[str, Any]:
    """`build_engine_plan` as JSON: what `deploy_twin` takes in its input's `plan` (tools and tests
    that trim a plan before deploying it edit this form)."""
    return build_engine_plan(spec_data).to_dict()
