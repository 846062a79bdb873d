"""The flaky profile (429/503 injected, long operations failing once, IAM propagation delay):
the AWS side of the plan still converges when transient failures are retried as the engine does."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from activities.registry import provider_for
from shared.engine.errors import classify
from shared.engine.types import EnsureResult

SKIP = ("grafana-datasource",)
# moto's DescribeEndpoint answers a new random IoT endpoint on every call (AWS's is stable), so
# the event-feedback Lambda's IOT_ENDPOINT would change on every run: left out of re-run checks.
NO_FEEDBACK = {"options": {"use_event_checking": True, "return_feedback_to_device": False}}
MAX_ATTEMPTS = 30


def _levels(w: Any) -> list[list[str]]:
    order = [rid for rid in w.aws_order() if w.plan.resource(rid).kind not in SKIP]
    depth: dict[str, int] = {}
    for rid in order:
        depth[rid] = 1 + max((depth.get(n, -1) for n in w.plan.resource(rid).needs), default=-1)
    return [[rid for rid in order if depth[rid] == d] for d in range(max(depth.values()) + 1)]


def _retrying(op: Any) -> Any:
    """Call `op` until it succeeds; only transient failures are retried (like call_with_backoff)."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return op()
        except Exception as exc:
            error = classify(exc)
            if error.kind != "transient":
                raise
            time.sleep(0.05)
    raise AssertionError(f"still failing after {MAX_ATTEMPTS} attempts")


@pytest.mark.slow
def test_flaky_profile_converges(walker: Any, sandbox: Any, ops: Any) -> None:
    w = walker(**NO_FEEDBACK)
    sandbox.profile("flaky", seed=7)
    transient_seen = 0

    def ensure(rid: str) -> EnsureResult:
        nonlocal transient_seen
        r = w.plan.resource(rid)
        provider = provider_for(r.provider, r.kind)
        result = _retrying(lambda: provider.ensure(w.call(rid)))
        while result.pending is not None:
            time.sleep(min(result.pending.poll_after_seconds, 0.2))
            pending = result.pending
            result = _retrying(lambda pending=pending: provider.poll(w.call(rid, pending)))
        if r.produces:
            w.outputs[rid] = dict(result.outputs)
        return result

    # Like the engine: every resource whose needs are done runs in parallel with the others.
    for level in _levels(w):
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(ensure, level))
    injected = [r for r in sandbox.requests(0) if r["status"] in (429, 503)]
    assert injected, "the flaky profile injected no faults: the test proves nothing"
    sandbox.profile("instant")
    mark = ops.mark()
    again = {rid: ensure(rid).action for rid in w.aws_order() if w.plan.resource(rid).kind not in SKIP}
    assert {rid: a for rid, a in again.items() if a != "unchanged"} == {}
    assert ops.writes(mark) == []
    sandbox.profile("flaky", seed=11)
    for rid in reversed(w.aws_order()):
        r = w.plan.resource(rid)
        if r.kind in SKIP:
            continue
        provider = provider_for(r.provider, r.kind)
        result = _retrying(lambda provider=provider, rid=rid: provider.delete(w.call(rid)))
        while result.pending is not None:
            time.sleep(0.05)
            pending = result.pending
            result = _retrying(lambda provider=provider, rid=rid, pending=pending: provider.poll(w.call(rid, pending)))
    sandbox.profile("instant")
    assert [r for r in sandbox.resources() if w.twin in r["id"]] == []
