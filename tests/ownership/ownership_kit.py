"""A sandbox with AWS and Azure, and a driver that runs plan resources' provider operations the
way the engine does (ensure or delete, then polls; transient errors retried; outputs recorded and
wired into consumers), for twins whose cloud names collide."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.registry import provider_for
from shared.engine.errors import TransientError, classify
from shared.engine.types import EnsureResult, ReadResult, Resource, ResourceCall
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
LIMIT_SECONDS = 60.0


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "examples" / name / "twin.json").read_text()))


def renamed(spec: dict[str, Any], twin: str, devices: dict[str, str] | None = None) -> dict[str, Any]:
    """`spec` for twin `twin`, with device ids renamed everywhere they appear (as whole strings)."""
    out = copy.deepcopy(spec)
    out["twin"]["name"] = twin

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            for old, new in (devices or {}).items():
                value = value.replace(old, new) if old in value and not value.startswith("dtmi:") else value
        return value

    return dict(walk(out))


def plan_of(spec: dict[str, Any]) -> Plan:
    return build_plan(spec_from_dict(spec))


@dataclass
class Driver:
    """One twin's plan, driven resource by resource."""

    plan: Plan
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def twin(self) -> str:
        return self.plan.twin

    def resource_name(self, rid: str) -> str:
        return str(self.plan.resource(rid).config.name)

    def call(self, rid: str, pending: Any = None) -> ResourceCall:
        r = self.plan.resource(rid)
        known = {k: v for o in self.outputs.values() for k, v in o.items()}
        settings: dict[str, str | None] = {w.setting: known[w.output] for w in self.plan.wires_into(rid)
                                           if w.output in known}
        return ResourceCall(twin=self.twin, resource=Resource.from_dict(r.to_json(include_config=True)),
                            settings=settings, current=self.outputs.get(rid, {}), pending=pending)

    def _provider(self, rid: str) -> Any:
        r = self.plan.resource(rid)
        return provider_for(r.provider, r.kind)

    @staticmethod
    def _retrying(fn: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + LIMIT_SECONDS
        while True:
            try:
                return fn()
            except Exception as exc:
                if not isinstance(classify(exc), TransientError) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _drive(self, rid: str, first: EnsureResult) -> EnsureResult:
        result, deadline = first, time.monotonic() + LIMIT_SECONDS
        while result.pending is not None:
            assert time.monotonic() < deadline, f"{rid}: still pending: {result.pending.description}"
            time.sleep(min(result.pending.poll_after_seconds, 0.3))
            result = self._retrying(lambda c=self.call(rid, result.pending): self._provider(rid).poll(c))  # type: ignore[misc]
        return result

    def ensure(self, rid: str) -> EnsureResult:
        result = self._drive(rid, self._retrying(lambda: self._provider(rid).ensure(self.call(rid))))
        if self.plan.resource(rid).produces:
            self.outputs[rid] = dict(result.outputs)
        return result

    def delete(self, rid: str) -> EnsureResult:
        return self._drive(rid, self._retrying(lambda: self._provider(rid).delete(self.call(rid))))

    def read(self, rid: str) -> ReadResult:
        result: ReadResult = self._retrying(lambda: self._provider(rid).read(self.call(rid)))
        return result

    def closure(self, *rids: str) -> list[str]:
        """`rids` and everything they need, in the plan's order."""
        seen: set[str] = set()
        stack = list(rids)
        while stack:
            cur = stack.pop()
            if cur not in seen:
                seen.add(cur)
                stack.extend(self.plan.resource(cur).needs)
        return [rid for rid in self.plan.topological_order() if rid in seen]

    def ensure_all(self, *rids: str) -> dict[str, EnsureResult]:
        return {rid: self.ensure(rid) for rid in self.closure(*rids)}
