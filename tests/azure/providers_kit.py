"""Helpers of the Azure provider tests: the sandbox handle (request log), and a small walker that drives a plan's Azure resources
through `ensure`/`poll`/`delete` the way the engine does (outputs recorded, wired settings
passed to consumers), so each test reaches the resource it checks with real prerequisites.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.registry import provider_for
from sandbox.server import Sandbox
from shared.engine.errors import TransientError, classify
from shared.engine.types import EnsureResult, Resource, ResourceCall
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# POST actions that only read (keys, settings lists): not mutations, though the method is POST.
READ_ONLY_ACTIONS = {"listkeys", "list", "listkeysasync", "listconnectionstrings"}
MUTATING = {"PUT", "POST", "PATCH", "DELETE"}
POLL_LIMIT_SECONDS = 60.0


def example_spec(name: str, twin: str | None = None, **overrides: Any) -> dict[str, Any]:
    spec = json.loads((EXAMPLES / name / "twin.json").read_text())
    spec = copy.deepcopy(spec)
    if twin:
        spec["twin"]["name"] = twin
    for key, value in overrides.items():
        spec[key] = value
    return spec


def unique_twin() -> str:
    return "t" + uuid.uuid4().hex[:7]


def plan_for(spec: dict[str, Any]) -> Plan:
    return build_plan(spec_from_dict(spec))


def mutating_calls(records: list[dict[str, Any]]) -> list[str]:
    """`METHOD path` of the requests that change something (read-only POST actions excluded)."""
    out = []
    for r in records:
        if r["method"] not in MUTATING:
            continue
        path = r["url"].split("?", 1)[0]
        if r["method"] == "POST" and path.rstrip("/").rsplit("/", 1)[-1].lower() in READ_ONLY_ACTIONS:
            continue
        out.append(f"{r['method']} {path}")
    return out


@dataclass
class SandboxHandle:
    sb: Sandbox

    def seq(self) -> int:
        return self.sb.ctx.request_log.last_seq()

    def requests(self, since: int) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.sb.control_url}/requests?since={since}", timeout=30) as resp:
            return list(json.loads(resp.read()))

    def mutations(self, since: int) -> list[str]:
        return mutating_calls(self.requests(since))

    def profile(self, name: str, seed: int = 0) -> None:
        self.sb.ctx.faults.set_profile(name, seed)


@dataclass
class Walker:
    """Drives a plan's resources like the engine: ensure (+poll until done), record outputs."""

    plan: Plan
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    polls: int = 0
    retry_transient: bool = False
    transient_errors: list[str] = field(default_factory=list)

    def _attempt(self, fn: Callable[[], EnsureResult]) -> EnsureResult:
        """`fn()`; with `retry_transient`, TransientErrors are retried (bounded) as the engine does."""
        deadline = time.monotonic() + POLL_LIMIT_SECONDS
        while True:
            try:
                return fn()
            except Exception as exc:
                err = classify(exc)
                if not (self.retry_transient and isinstance(err, TransientError)) or time.monotonic() > deadline:
                    raise
                self.transient_errors.append(str(err))
                time.sleep(0.2)

    @property
    def twin(self) -> str:
        return self.plan.twin

    def call(self, rid: str, pending: Any = None) -> ResourceCall:
        r = self.plan.resource(rid)
        known = {k: v for o in self.outputs.values() for k, v in o.items()}
        settings: dict[str, str | None] = {w.setting: known[w.output] for w in self.plan.wires_into(rid)
                                           if w.output in known}
        resource = Resource.from_dict(r.to_json(include_config=True))
        return ResourceCall(twin=self.twin, resource=resource, settings=settings, current=self.outputs.get(rid, {}),
                            pending=pending)

    def drive(self, rid: str, first: EnsureResult, op: str = "poll") -> EnsureResult:
        result = first
        deadline = time.monotonic() + POLL_LIMIT_SECONDS
        r = self.plan.resource(rid)
        while result.pending is not None:
            assert time.monotonic() < deadline, f"{rid}: still pending after {POLL_LIMIT_SECONDS}s: {result}"
            time.sleep(min(result.pending.poll_after_seconds, 0.5))
            self.polls += 1
            pending = result.pending

            def poll_once(p: Any = pending) -> EnsureResult:
                return provider_for(r.provider, r.kind).poll(self.call(rid, p))

            result = self._attempt(poll_once)
        return result

    def ensure(self, rid: str) -> EnsureResult:
        r = self.plan.resource(rid)
        result = self.drive(rid, self._attempt(lambda: provider_for(r.provider, r.kind).ensure(self.call(rid))))
        if r.produces:
            self.outputs[rid] = dict(result.outputs)
        return result

    def ensure_all(self, rids: list[str] | None = None, upto: str | None = None) -> dict[str, EnsureResult]:
        """Ensure `rids` (default: every resource, in topological order), or everything `upto` needs."""
        order = self.plan.topological_order()
        if upto is not None:
            wanted = self.closure(upto)
            order = [rid for rid in order if rid in wanted]
        elif rids is not None:
            order = [rid for rid in order if rid in set(rids)]
        return {rid: self.ensure(rid) for rid in order}

    def closure(self, rid: str) -> set[str]:
        seen: set[str] = set()
        stack = [rid]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(self.plan.resource(cur).needs)
        return seen

    def read(self, rid: str) -> Any:
        r = self.plan.resource(rid)
        return provider_for(r.provider, r.kind).read(self.call(rid))

    def delete(self, rid: str) -> EnsureResult:
        r = self.plan.resource(rid)
        return self.drive(rid, self._attempt(lambda: provider_for(r.provider, r.kind).delete(self.call(rid))))

    def delete_all(self, rids: list[str] | None = None) -> dict[str, EnsureResult]:
        order = list(reversed(self.plan.topological_order()))
        if rids is not None:
            order = [rid for rid in order if rid in set(rids)]
        return {rid: self.delete(rid) for rid in order}


