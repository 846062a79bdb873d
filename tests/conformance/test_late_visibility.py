"""`examples/azure-only` deployed under the `realistic` profile: provisioning takes time in
proportion to the real services and half of the long-running creates read as absent for a while
after ARM accepted them. The deployment still completes (the deployer waits for what it created
instead of creating it again), an unchanged re-deploy writes nothing, and the traffic of both
still matches Azure's specification."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure_openapi import Specs
from conformance_kit import Run, control_plane, example

from sandbox.core.requestlog import RequestRecord

SEED = 7


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with control_plane(tmp_path_factory.mktemp("realistic"), profile="realistic", seed=SEED, with_aws=False) as run:
        yield run


def late_reads(records: list[RequestRecord]) -> list[str]:
    """Paths read as absent (404) after ARM accepted their create (PUT 201/202), before they showed."""
    accepted: set[str] = set()
    shown: set[str] = set()
    late = []
    for r in records:
        if r.cloud != "azure":
            continue
        path = r.url.split("?", 1)[0].lower()
        if r.method == "PUT" and r.status in (201, 202):
            accepted.add(path)
        elif r.method == "GET" and path in accepted and path not in shown:
            if r.status == 404:
                late.append(path)
            elif r.status == 200:
                shown.add(path)
    return late


@pytest.mark.slow
def test_a_realistic_deployment_with_late_visibility_completes_and_reruns_without_a_write(realistic: Run) -> None:
    spec = example("azure-only")
    view = realistic.deploy(spec, "deploy")
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    late = late_reads(realistic.sandbox.ctx.request_log.since(0))
    assert len(set(late)) >= 2, late  # some resources did appear late after their 201/202
    # ... and the deployer waited for them rather than creating them again (a second PUT meets
    # ARM's 409 "another operation in progress").
    conflicts = [r.url for r in realistic.sandbox.ctx.request_log.since(0) if r.method == "PUT" and r.status == 409]
    assert conflicts == []
    mark = realistic.sandbox.ctx.request_log.last_seq()
    again = realistic.deploy(spec, "redeploy")
    assert again["runtimeStatus"] == "Completed", json.dumps(again)[:3000]
    assert realistic.mutating_since(mark) == []
    report = Specs().report(realistic.exchanges)
    print(f"\nrealistic: {len(set(late))} resources read late after their create was accepted; {report.summary()}")
    assert [str(v) for v in report.violations] == []
