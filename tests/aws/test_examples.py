"""The AWS side of the cross-cloud examples (receivers with Function URLs, remote writers), and
the tags that make the twin's resource group find its resources."""

from __future__ import annotations

from typing import Any

import pytest

from activities.providers.aws._common import client
from shared.resources.aws import LambdaConfig

SKIP = ("grafana-datasource",)


# Placements that put the other AWS receivers and senders in play: connector + cold-writer +
# data-connector readers; ingestion + archive-writer.
PLACEMENTS = {
    "connector-cold-writer-dt-readers": {
        "layer_1_provider": "aws", "layer_2_provider": "azure", "layer_3_hot_provider": "azure",
        "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws", "layer_4_provider": "aws",
        "layer_5_provider": "azure"},
    "ingestion-archive-writer": {
        "layer_1_provider": "azure", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
        "layer_3_cold_provider": "azure", "layer_3_archive_provider": "aws", "layer_4_provider": "azure",
        "layer_5_provider": "azure"},
}
EXPECTED = {
    "connector-cold-writer-dt-readers": {"connector", "cold-writer", "dt-reader", "dt-reader-last-entry", "dispatcher"},
    "ingestion-archive-writer": {"ingestion", "archive-writer", "persister", "processor"},
    "mixed": {"hot-writer", "hot-reader", "hot-to-cold-mover"},
}
# The base example supplies the hierarchy the placement's L4 needs (aws or azure).
CASES = [("aws-to-azure", None), ("mixed", None), ("aws-only", "connector-cold-writer-dt-readers"),
         ("aws-to-azure", "ingestion-archive-writer")]


@pytest.mark.parametrize(("example", "placement"), CASES)
def test_aws_side_of_cross_cloud_examples(example: str, placement: str | None, walker: Any, ops: Any,
                                          sandbox: Any) -> None:
    overrides: dict[str, Any] = {"providers": PLACEMENTS[placement]} if placement else {}
    if placement:
        overrides["options"] = {"use_event_checking": True, "return_feedback_to_device": False}
    w = walker(example, **overrides)
    packages = {str(r.config.package) for r in w.plan.resources if isinstance(r.config, LambdaConfig)}
    assert EXPECTED.get(placement or example, set()) <= packages
    created = w.ensure_all(skip_kinds=SKIP)
    assert {r: x.action for r, x in created.items() if r.startswith("aws/") and x.action != "created"} == {}
    receivers = [r for r in w.plan.resources_in("L0", "aws")]
    assert receivers, f"{example} has no AWS receiver"
    for r in receivers:
        outputs = created[r.id].outputs
        assert outputs and all("lambda-url" in v for k, v in outputs.items() if k.endswith("_URL")), outputs
    mark, seq = ops.mark(), sandbox.seq()
    again = w.ensure_all(skip_kinds=SKIP)
    assert {r: x.action for r, x in again.items() if x.action != "unchanged"} == {}
    assert ops.writes(mark) == [] and sandbox.wire_mutations(seq) == []
    w.delete_all(skip_kinds=SKIP)
    assert [r for r in sandbox.resources() if w.twin in r["id"]] == []


def test_everything_taggable_carries_twin_and_layer(walker: Any) -> None:
    w = walker(options={"use_event_checking": True, "return_feedback_to_device": False})
    w.ensure_all(upto="aws/L3_hot/hot-to-cold-mover-schedule")
    expected = {"DigitalTwin": w.twin, "ManagedBy": "twin-control-plane", "Layer": "L3_hot"}
    lam = client("lambda")
    arn = lam.get_function_configuration(FunctionName=f"{w.twin}-hot-to-cold-mover")["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == expected
    role = client("iam").get_role(RoleName=f"{w.twin}-hot-to-cold-mover")["Role"]
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == expected
    rule = client("events").describe_rule(Name=f"{w.twin}-hot-to-cold-mover")
    assert {t["Key"]: t["Value"] for t in client("events").list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]} \
        == expected
    bucket = client("s3").get_bucket_tagging(Bucket=f"{w.twin}-cold-iot-data")["TagSet"]
    assert {t["Key"]: t["Value"] for t in bucket} == {"DigitalTwin": w.twin, "ManagedBy": "twin-control-plane", "Layer": "L3_cold"}
    w.delete_all(upto="aws/L3_hot/hot-to-cold-mover-schedule")
