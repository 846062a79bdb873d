"""Changes made outside a deployment (issue "AWS provider", last must-show) on `examples/aws-to-azure`:
recreating the Digital Twins instance gives it a new host name; Azure Resource Manager's event
reaches the control plane's watch, `refresh_outputs` records the new `ADT_INSTANCE_URL`, and the
event-triggered propagation rewrites the ADT Pusher's app settings, with no other write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, http

from shared.contracts import Setting

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from activities.clouds import clouds_from_environ
    from shared.contracts import ControlPlaneSetting
    from twin_cli.infrastructure import ensure_resource_watch, webhook_url

    with deployment(example("aws-to-azure"), tmp_path_factory.mktemp("out-of-band")) as dep:
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        # The control plane's own infrastructure: its watch on the subscription's ARM events.
        ensure_resource_watch(clouds_from_environ({ControlPlaneSetting.SANDBOX_DIR: str(dep.sandbox_dir)}),
                              webhook_url(dep.target.base, dep.target.key))
        yield dep


def _operations(d: Deployment, operation: str) -> list[dict[str, Any]]:
    status, body = http("GET", f"{d.target.base}/runtime/webhooks/durabletask/instances/"
                               f"?instanceIdPrefix=twin:{d.twin}:{operation}:&code={d.target.key}")
    assert status == 200, body
    return list(body)


def _mutating(d: Deployment, since: int) -> list[str]:
    return [f"{r['method']} {r['url'].split('?')[0]}" for r in d.requests(since) if r.get("mutating")]


def test_a_refresh_of_an_unchanged_twin_reads_every_producer_and_writes_nothing(d: Deployment) -> None:
    mark = d.seq()
    status, body = d.api("POST", f"twins/{d.twin}/refresh")
    assert status == 202, body
    view = d.follow(body["id"])
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    result = view["result"]
    # Every cloud producer was read, and what each read returns equals what its deploy recorded.
    assert "azure/L4/digital-twins" in result["read"] and "aws/L3_hot/hot-table" in result["read"], result
    assert result["changed"] == [] and result["missing"] == [] and result["failed"] == [], result
    d.idle()
    assert _mutating(d, mark) == []


def test_bad_refresh_requests_are_refused_with_their_path(d: Deployment) -> None:
    status, body = d.api("POST", f"twins/{d.twin}/refresh", {"resources": ["azure/L4/nope"], "extra": 1})
    assert status == 400
    assert {e["path"] for e in body["errors"]} == {"extra"}, body
    status, body = d.api("POST", f"twins/{d.twin}/refresh", {"resources": ["azure/L4/nope"]})
    assert status == 400 and body["errors"][0]["path"] == "resources[0]", body
    status, body = d.api("POST", "twins/no-such-twin/refresh")
    assert status == 404, body


def test_recreating_the_digital_twins_instance_rewires_the_pusher_and_nothing_else(d: Deployment) -> None:
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
    from azure.mgmt.web import WebSiteManagementClient

    az = d.azure()
    adt = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw)
    web = WebSiteManagementClient(az.cred, az.sub, **az.kw)
    name, pusher_app = az.naming.digital_twins(), az.naming.function_app("L0")
    old = adt.digital_twins.get(az.rg, name)
    _, before = d.api("GET", f"twins/{d.twin}")
    refreshes_before = len(_operations(d, "refresh"))
    mark = d.seq()

    # Outside the control plane, as someone would in the portal: delete and create again.
    adt.digital_twins.begin_delete(az.rg, name).result()
    new = adt.digital_twins.begin_create_or_update(az.rg, name, DigitalTwinsDescription(location=old.location)).result()
    assert new.host_name and new.host_name != old.host_name

    wanted = "https://" + str(new.host_name)
    deadline = time.monotonic() + 90
    while True:
        settings = web.web_apps.list_application_settings(az.rg, pusher_app).properties
        if settings.get(Setting.ADT_INSTANCE_URL) == wanted:
            break
        assert time.monotonic() < deadline, (settings.get(Setting.ADT_INSTANCE_URL), wanted, d.diagnose(mark))
        time.sleep(0.3)
    d.idle()

    # The path taken: ARM events -> refresh (a new version of the output) -> propagation.
    refreshes = _operations(d, "refresh")
    assert len(refreshes) > refreshes_before
    assert all(r["runtimeStatus"] == "Completed" for r in refreshes), refreshes
    assert any(r["output"]["changed"] == ["ADT_INSTANCE_URL"] for r in refreshes), refreshes
    assert any(r["runtimeStatus"] == "Completed" for r in _operations(d, "propagate")), "no propagation ran"
    _, after = d.api("GET", f"twins/{d.twin}")
    assert after["outputs"]["ADT_INSTANCE_URL"]["version"] == before["outputs"]["ADT_INSTANCE_URL"]["version"] + 1
    assert after["outputs"]["ADT_INSTANCE_URL"]["value"] == wanted

    # No other write: besides the test's own delete and create, only the Pusher's app settings.
    instance_path = f"/digitalTwinsInstances/{name}".lower()
    writes = [w for w in _mutating(d, mark) if not w.lower().endswith(instance_path)]
    assert len(writes) == 1, writes
    assert writes[0].startswith("PUT ") and writes[0].lower().endswith(
        f"/sites/{pusher_app}/config/appsettings".lower()), writes


def test_after_the_recreation_a_deploy_restores_models_and_twins_and_telemetry_flows(d: Deployment) -> None:
    """The recreated instance is empty; deploying the spec again re-uploads its models and twins
    (their providers reconcile against the instance), and a message reaches the twin again."""
    view = d.deploy()
    d.idle()
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    report = d.simulate(count=1, timeout=30)
    assert report["exit_code"] == 0, json.dumps(report)[:3000]
    assert all(m["twin_at"] for m in report["messages"]), json.dumps(report)[:3000]
