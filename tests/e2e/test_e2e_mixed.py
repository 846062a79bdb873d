"""`examples/mixed` (L1, L2, L4 on Azure; hot storage on AWS, cold on GCP, archive on Azure; L5 on
AWS) deployed by the local control plane into the whole sandbox: telemetry sent through IoT Hub
reaches DynamoDB through the AWS hot writer, the AWS hot-to-cold mover hands the expired readings
to the GCP cold writer (a NEARLINE bucket), and the GCP cold-to-archive mover, run by its Cloud
Scheduler job, hands those objects to the Azure archive writer (Blob, Archive tier): the same bytes
at every hop, nothing left behind. Each mover runs as at a moment past its retention (the AWS rule's
event `time`, the Cloud Scheduler job's `X-CloudScheduler-ScheduleTime`)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, failed_messages, http

from shared.contracts import Function, Setting
from shared.naming import AwsNaming, AzureNaming, GcpNaming

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # With Azurite: the storage account the deployment creates through ARM serves Blob (the archive).
    with deployment(example("mixed"), tmp_path_factory.mktemp("mixed"), with_blob=True) as dep:
        yield dep


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cold_objects(d: Deployment) -> dict[str, tuple[bytes, str]]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    g = d.sandbox.endpoints["gcp"]
    client = storage.Client(project=g["project_id"], credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": g["storage_emulator_host"]})
    return {b.name: (b.download_as_bytes(), str(b.storage_class))
            for b in client.list_blobs(GcpNaming(d.twin).cold_bucket())}


def _archive_container(d: Deployment) -> Any:
    """The archive container, found as an operator would: the archive writer's own settings."""
    from azure.mgmt.web import WebSiteManagementClient
    from azure.storage.blob import BlobServiceClient

    az = d.azure()
    settings = WebSiteManagementClient(az.cred, az.sub, **az.kw).web_apps.list_application_settings(
        az.rg, AzureNaming(d.twin).function_app("L0")).properties
    blob = BlobServiceClient.from_connection_string(settings[str(Setting.BLOB_CONNECTION_STRING)], connection_verify=az.ca)
    return blob.get_container_client(settings[str(Setting.ARCHIVE_STORAGE_CONTAINER)])


def test_the_deployment_spans_three_clouds(d: Deployment) -> None:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view)[:3000]
    resources = {cloud: [r for r in items if d.twin.lower() in json.dumps(r).lower()]
                 for cloud, items in d.resources().items()}
    assert resources.get("gcp") and resources.get("aws") and resources.get("azure"), list(resources)


def test_readings_move_hot_aws_to_cold_gcp_to_archive_azure_with_the_same_bytes(d: Deployment) -> None:
    # temperature-sensor-1 only: the example's DTDL models have no `maxTemperature`, `density` or
    # `hardness`, so the other devices' readings are stored but never complete on the twin.
    report = d.simulate(count=3, devices=["temperature-sensor-1"])
    assert report["hot_storage"] == "aws" and report["exit_code"] == 0 and failed_messages(report) == [], \
        json.dumps(report)[:3000]
    sent = {(m["device_id"], m["timestamp"]): m["values"] for m in report["messages"]}
    hot_days, cold_days = int(d.spec["twin"]["hot_storage_days"]), int(d.spec["twin"]["cold_storage_days"])
    now = datetime.now(UTC)

    # AWS hot -> GCP cold: the rule's event as at a moment when every reading has expired.
    rule = AwsNaming(d.twin).schedule_rule(str(Function.HOT_TO_COLD_MOVER))
    status, out = http("POST", f"{d.control}/aws/rules/{urllib.parse.quote(rule)}/run",
                       {"time": _stamp(now + timedelta(days=hot_days + 1))}, timeout=300)
    assert status == 200 and [i["ok"] for i in out["invocations"]] == [True], out
    moved = out["invocations"][0]["payload"]
    assert moved["remote"] is True and moved["moved"] == len(sent), moved
    cold = _cold_objects(d)
    assert set(cold) == set(moved["keys"]), sorted(cold)
    assert {cls for _, cls in cold.values()} == {"NEARLINE"}
    in_cold = {(r["device_id"], r["timestamp"]): r for body, _ in cold.values() for r in json.loads(body)}
    assert set(in_cold) == set(sent)
    for key, values in sent.items():
        for name, value in values.items():  # every value sent, in the object written on GCP
            assert in_cold[key][name] == pytest.approx(value), (key, in_cold[key])
    assert d.aws_client("dynamodb").scan(TableName=AwsNaming(d.twin).hot_table())["Items"] == []

    # GCP cold -> Azure archive: the Cloud Scheduler job as scheduled past the cold retention.
    job = GcpNaming(d.twin).schedule(str(Function.COLD_TO_ARCHIVE_MOVER))
    status, outcome = http("POST", f"{d.control}/gcp/jobs/{job}/run",
                           {"time": _stamp(now + timedelta(days=cold_days + 1))}, timeout=300)
    assert status == 200 and outcome.get("ok") and outcome.get("status") == 200, outcome
    assert _cold_objects(d) == {}
    container = _archive_container(d)
    archived = {b.name: str(b.blob_tier) for b in container.list_blobs()}
    assert set(archived) == set(cold) and set(archived.values()) == {"Archive"}, archived
    for key, (body, _) in cold.items():
        # An archived blob is read after rehydration to an online tier, as on Azure (instant here).
        container.get_blob_client(key).set_standard_blob_tier("Cool", rehydrate_priority="High")
        assert container.download_blob(key).readall() == body, key  # the same bytes at the last hop

    # A second run of each finds nothing left to move.
    status, again = http("POST", f"{d.control}/gcp/jobs/{job}/run",
                         {"time": _stamp(now + timedelta(days=cold_days + 1))}, timeout=300)
    assert status == 200 and again.get("status") == 200, again
    assert set(b.name for b in container.list_blobs()) == set(archived)
