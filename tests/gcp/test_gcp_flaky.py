"""The flaky profile (429/503 on REST and gRPC, function deploys that fail once, invoker grants that
take effect late): the GCP side of `examples/gcp-to-azure` still converges when transient failures
are retried as the engine does, re-runs without a write, and is destroyed completely."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from activities.registry import provider_for
from shared.engine.errors import classify
from shared.engine.types import EnsureResult

MAX_ATTEMPTS = 30


def _levels(w: Any) -> list[list[str]]:
    order = w.order()
    depth: dict[str, int] = {}
    for rid in order:
        depth[rid] = 1 + max((depth.get(n, -1) for n in w.plan.resource(rid).needs), default=-1)
    return [[rid for rid in order if depth[rid] == d] for d in range(max(depth.values()) + 1)]


def _retrying(op: Any, transient: list[str]) -> Any:
    """Call `op` until it succeeds; only transient failures are retried (like call_with_backoff)."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return op()
        except Exception as exc:
            error = classify(exc)
            if error.kind != "transient":
                raise
            transient.append(str(error)[:120])
            time.sleep(0.05)
    raise AssertionError(f"still failing after {MAX_ATTEMPTS} attempts")


@pytest.mark.slow
def test_flaky_profile_converges(walker: Any, sandbox: Any) -> None:
    # Which deploys fail once depends on the seed and the function's name only (not on thread
    # timing): with this twin name and seed, some of its functions' first deploys fail.
    w = walker(twin="flaky-g7")
    sandbox.profile("flaky", seed=7)
    mark = sandbox.seq()
    transient: list[str] = []

    def run(rid: str, first: Any) -> EnsureResult:
        r = w.plan.resource(rid)
        provider = provider_for(r.provider, r.kind)
        result = _retrying(lambda: first(provider, rid), transient)
        deadline = time.monotonic() + 120
        while result.pending is not None:
            assert time.monotonic() < deadline, f"{rid} still pending: {result.pending.description}"
            time.sleep(min(result.pending.poll_after_seconds, 0.2))
            pending = result.pending
            result = _retrying(lambda pending=pending: provider.poll(w.call(rid, pending)), transient)
        if r.produces and first is _ensure:
            w.outputs[rid] = dict(result.outputs)
        return result

    def _ensure(provider: Any, rid: str) -> EnsureResult:
        return provider.ensure(w.call(rid))  # type: ignore[no-any-return]

    # Like the engine: every resource whose needs are done runs in parallel with the others.
    for level in _levels(w):
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda rid: run(rid, _ensure), level))
    calls = sandbox.requests(mark)
    assert [r for r in calls if r["status"] in (429, 503)], "the flaky profile injected no faults: it proves nothing"
    redeployed = [r for r in calls if r.get("operation") == "cloudfunctions:UpdateFunction"]
    assert redeployed, "no function deploy failed once: the redeploy path was not exercised"

    sandbox.profile("instant")
    mark = sandbox.seq()
    again = {rid: w.ensure(rid).action for rid in w.order()}
    assert {rid: a for rid, a in again.items() if a != "unchanged"} == {}
    assert sandbox.writes(mark) == []

    sandbox.profile("flaky", seed=11)
    for rid in reversed(w.order()):
        run(rid, lambda provider, rid: provider.delete(w.call(rid)))
    sandbox.profile("instant")
    assert sandbox.twin_resources(w.twin) == []
