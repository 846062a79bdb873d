"""The whole AWS side of a plan, walked like the engine: ensure, ensure again, destroy."""

from __future__ import annotations

from typing import Any

# The sandbox has no Grafana HTTP API for the datasource (see test_twin_and_grafana).
SKIP = ("grafana-datasource",)
# moto's DescribeEndpoint answers a new random IoT endpoint on every call (AWS's is stable), so
# the event-feedback Lambda's IOT_ENDPOINT would change on every run: left out of re-run checks.
NO_FEEDBACK = {"options": {"use_event_checking": True, "return_feedback_to_device": False}}


def test_aws_only_walk(walker: Any, sandbox: Any, ops: Any) -> None:
    w = walker(**NO_FEEDBACK)
    results = w.ensure_all(skip_kinds=SKIP)
    bad = {rid: r.action for rid, r in results.items() if r.action != "created" and not rid.startswith("control/")}
    assert bad == {}
    mark, seq = ops.mark(), sandbox.seq()
    again = w.ensure_all(skip_kinds=SKIP)
    assert {rid: r.action for rid, r in again.items() if r.action != "unchanged"} == {}
    assert ops.writes(mark) == []
    assert sandbox.wire_mutations(seq) == []
    gone = w.delete_all(skip_kinds=SKIP)
    assert {rid: r.action for rid, r in gone.items() if r.action not in ("deleted",) and not rid.startswith("control/")} == {}
    left = [r for r in sandbox.resources() if w.twin in r["id"]]
    assert left == []
