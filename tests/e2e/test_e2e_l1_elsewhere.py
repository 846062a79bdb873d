"""Must-show 3: L1 on AWS, L2-L4 on Azure (a spec made from `examples/aws-to-azure`). AWS IoT
hands telemetry to the AWS connector, which posts it to the Azure ingestion function; the Azure
L2 persister stores it in Cosmos DB and, L4 being on its own cloud, updates the twin itself (no
ADT Pusher is deployed or called)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, failed_messages

from shared.contracts import adt_property_name

pytestmark = pytest.mark.slow


def _spec() -> dict[str, Any]:
    spec = example("aws-to-azure")
    spec["twin"]["name"] = "greenhouse-l1a"
    spec["providers"] = {**spec["providers"], "layer_1_provider": "aws", "layer_2_provider": "azure",
                         "layer_3_hot_provider": "azure", "layer_3_cold_provider": "azure",
                         "layer_3_archive_provider": "azure", "layer_4_provider": "azure",
                         "layer_5_provider": "azure"}
    return spec


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(_spec(), tmp_path_factory.mktemp("l1-elsewhere")) as dep:
        yield dep


def test_the_azure_persister_updates_the_twin_itself(d: Deployment) -> None:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view)[:3000]
    assert "ADT_PUSHER_URL" not in d.view["outputs"]
    mark = d.seq()
    report = d.simulate(count=1, devices=["climate-sensor-1"], timeout=10)
    assert (report["l1"], report["hot_storage"], report["twins"]) == ("aws", "azure", "azure")
    assert report["exit_code"] == 0 and failed_messages(report) == [], (
        json.dumps(report)[:2000] + "\n" + d.diagnose(mark))
    for m in report["messages"]:
        twin = d.digital_twin(m["device_id"])
        for name, value in m["values"].items():
            assert twin[adt_property_name(name)] == pytest.approx(value), (m, twin)
    calls = d.requests(mark)
    assert not [r for r in calls if "adt-pusher" in r["url"]]
    # The processor calls the persister in-process (same app), so the twin PATCH is what shows.
    patches = [r for r in calls if r["method"] == "PATCH" and "/digitaltwins/" in r["url"]]
    assert len(patches) >= len(report["messages"]) and all(r["status"] < 300 for r in patches), patches
