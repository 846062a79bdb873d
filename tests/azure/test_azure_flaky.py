"""Eventual consistency under the sandbox's `flaky` profile (seeded, so repeatable): 429/503
retried, an LRO that fails once is started again, Digital Twins' 403 before the role applies
is transient; the end state is the same as on a quiet cloud, and a re-run changes nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from providers_kit import Walker, example_spec, plan_for, unique_twin

CONTAINER = "azure/L3_hot/cosmos-container"
GRAPH = "azure/L4/twin-graph"
TARGETS = ["azure/setup/storage-account", CONTAINER, "azure/L4/adt-role-assignment", GRAPH]


@pytest.mark.slow
def test_flaky_cloud_converges(sandbox: Any) -> None:
    w = Walker(plan_for(example_spec("azure-only", unique_twin())), retry_transient=True)
    sandbox.profile("flaky", seed=7)
    mark = sandbox.seq()
    wanted: set[str] = set()
    for target in TARGETS:
        wanted |= w.closure(target)
    results = w.ensure_all(sorted(wanted))
    assert all(r.done for r in results.values())
    records = sandbox.requests(mark)
    statuses = Counter(r["status"] for r in records)
    assert statuses[429] + statuses[503] > 0, "the profile injected no throttling: the test proves nothing"
    puts = Counter(r["url"].split("?")[0] for r in records if r["method"] == "PUT")
    # The sandbox failed some LROs once; those resources were PUT again and then succeeded.
    assert any(n > 1 for n in puts.values()), puts
    assert any("not effective yet" in e for e in w.transient_errors), w.transient_errors
    assert w.outputs[CONTAINER] == {"COSMOS_DB_DATABASE": "iot-data", "COSMOS_DB_CONTAINER": "hot-data"}

    sandbox.profile("instant")
    mark = sandbox.seq()
    again = w.ensure_all(sorted(wanted))
    assert {r.action for r in again.values()} == {"unchanged"}
    assert sandbox.mutations(mark) == []
    w.delete("azure/setup/resource-group")
