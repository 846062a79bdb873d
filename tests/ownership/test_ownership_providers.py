"""A twin touches only what it owns (issue 12 item 1), through the real providers against the
sandbox. The issue's collisions: twin `greenhouse` with devices `x-climate-sensor-1` and
`x-soil-probe-1` names its IoT things and processor Lambdas like `greenhouse-x`'s; twin
`GREENHOUSE-X` names its S3 buckets (lower case) and its Azure resource group (case-insensitive)
like `greenhouse-x`'s. The second twin's `ensure` fails naming the owner and changes nothing; its
`delete` leaves the first twin's objects (and data) alone; unowned objects are adopted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from ownership_kit import Driver, example, plan_of, renamed

from activities.providers.aws._common import client
from activities.registry import provider_for
from shared.engine.errors import PermanentError
from shared.resources.ownership import CONTROL_PLANE

RENAMED_DEVICES = {"climate-sensor-1": "x-climate-sensor-1", "soil-probe-1": "x-soil-probe-1"}


@pytest.fixture(scope="module")
def greenhouse_x(sandbox: Any) -> Driver:
    return Driver(plan_of(renamed(example("aws-to-azure"), "greenhouse-x")))


def _function(lam: Any, name: str, conf: dict[str, Any] | None = None) -> tuple[Any, ...]:
    conf = conf or lam.get_function_configuration(FunctionName=name)
    return conf["LastModified"], conf["CodeSha256"], conf["Role"], conf.get("Environment")


def _refused(driver: Driver, rid: str, owner: str) -> str:
    with pytest.raises(PermanentError) as failure:
        driver.ensure(rid)
    text = str(failure.value)
    assert f"twin {owner!r}" in text and rid in text, text
    return text


def test_device_names_of_another_twin_are_refused_and_never_deleted(greenhouse_x: Driver) -> None:
    x = greenhouse_x
    x.ensure_all("aws/L1/device-climate-sensor-1", "aws/L2/processor-climate-sensor-1")
    iot, lam = client("iot", "eu-central-1"), client("lambda", "eu-central-1")
    thing, function = "greenhouse-x-climate-sensor-1", "greenhouse-x-climate-sensor-1-processor"
    certificates = iot.list_thing_principals(thingName=thing)["principals"]
    before = lam.get_function_configuration(FunctionName=function)
    assert len(certificates) == 1

    g = Driver(plan_of(renamed(example("aws-to-azure"), "greenhouse", RENAMED_DEVICES)))
    assert g.resource_name("aws/L1/device-x-climate-sensor-1") == thing
    assert g.resource_name("aws/L2/processor-x-climate-sensor-1") == function
    g.ensure_all("aws/setup/resource-group")
    _refused(g, "aws/L1/device-x-climate-sensor-1", "greenhouse-x")
    _refused(g, "aws/L2/processor-x-climate-sensor-1", "greenhouse-x")
    settings = replace(g.call("aws/L2/processor-x-climate-sensor-1"), settings={"OPERATOR_NOTE": "greenhouse's"})
    with pytest.raises(PermanentError, match="twin 'greenhouse-x'"):  # nor are its settings written
        provider_for("aws", "lambda").apply_settings(settings)
    # Nothing of greenhouse-x changed: the same certificate, the same function and settings.
    assert iot.list_thing_principals(thingName=thing)["principals"] == certificates
    assert _function(lam, function) == _function(lam, function, before)
    assert not g.read("aws/L1/device-x-climate-sensor-1").exists

    # Destroying greenhouse (its state recorded them, e.g. adopted by an earlier version) deletes
    # none of greenhouse-x's objects.
    assert g.delete("aws/L1/device-x-climate-sensor-1").action == "absent"
    assert g.delete("aws/L2/processor-x-climate-sensor-1").action == "absent"
    assert iot.list_thing_principals(thingName=thing)["principals"] == certificates
    assert iot.get_policy(policyName=thing)["policyName"] == thing
    assert _function(lam, function) == _function(lam, function, before)
    assert client("iam").get_role(RoleName=function)["Role"]["RoleName"] == function
    assert x.read("aws/L1/device-climate-sensor-1").exists


def test_names_equal_up_to_case_share_no_bucket(greenhouse_x: Driver) -> None:
    x = greenhouse_x
    x.ensure_all("aws/L3_cold/cold-bucket")
    s3 = client("s3", "eu-central-1")
    s3.put_object(Bucket="greenhouse-x-cold-iot-data", Key="readings/1.json", Body=b"{}")

    upper = Driver(plan_of(renamed(example("aws-to-azure"), "GREENHOUSE-X")))
    assert upper.resource_name("aws/L3_cold/cold-bucket") == "greenhouse-x-cold-iot-data"
    _refused(upper, "aws/L3_cold/cold-bucket", "greenhouse-x")
    assert upper.delete("aws/L3_cold/cold-bucket").action == "absent"
    assert s3.get_object(Bucket="greenhouse-x-cold-iot-data", Key="readings/1.json")["Body"].read() == b"{}"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="greenhouse-x-cold-iot-data")["TagSet"]}
    assert tags["DigitalTwin"] == "greenhouse-x" and tags["ManagedBy"] == CONTROL_PLANE


def test_names_equal_up_to_case_share_no_resource_group(greenhouse_x: Driver) -> None:
    from azure.mgmt.resource.resources import ResourceManagementClient

    from activities.providers.azure._common import mgmt

    x = greenhouse_x
    x.ensure_all("azure/setup/identity")
    upper = Driver(plan_of(renamed(example("aws-to-azure"), "GREENHOUSE-X")))
    _refused(upper, "azure/setup/resource-group", "greenhouse-x")
    _refused(upper, "azure/setup/identity", "greenhouse-x")  # its own tags, inside the group
    assert upper.delete("azure/setup/identity").action == "absent"
    assert upper.delete("azure/setup/resource-group").action == "absent"
    group = mgmt(ResourceManagementClient).resource_groups.get("greenhouse-x-rg")
    assert (group.tags or {})["DigitalTwin"] == "greenhouse-x"
    assert x.read("azure/setup/identity").exists


def test_unowned_objects_are_adopted_and_marked(sandbox: Any) -> None:
    """An object nothing owns (made by hand, or by a version that did not tag) becomes the twin's:
    its owner tags are written; one that names only the twin (older versions) is the twin's."""
    d = Driver(plan_of(renamed(example("aws-to-azure"), "adopter")))
    s3 = client("s3", "eu-central-1")
    s3.create_bucket(Bucket="adopter-cold-iot-data", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_tagging(Bucket="adopter-cold-iot-data", Tagging={"TagSet": [{"Key": "team", "Value": "plants"}]})
    s3.create_bucket(Bucket="adopter-archive-iot-data",
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_tagging(Bucket="adopter-archive-iot-data",
                          Tagging={"TagSet": [{"Key": "DigitalTwin", "Value": "adopter"}]})
    d.ensure_all("aws/L3_cold/cold-bucket", "aws/L3_archive/archive-bucket")
    for bucket in ("adopter-cold-iot-data", "adopter-archive-iot-data"):
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags["DigitalTwin"] == "adopter" and tags["ManagedBy"] == CONTROL_PLANE, tags
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="adopter-cold-iot-data")["TagSet"]}["team"] \
        == "plants"  # others' tags are kept
    # Another control plane's object is not this one's, even for the same twin name.
    s3.put_bucket_tagging(Bucket="adopter-archive-iot-data", Tagging={"TagSet": [
        {"Key": "DigitalTwin", "Value": "adopter"}, {"Key": "ManagedBy", "Value": "another-control-plane"}]})
    with pytest.raises(PermanentError, match="another-control-plane"):
        d.ensure("aws/L3_archive/archive-bucket")
    assert d.delete("aws/L3_archive/archive-bucket").action == "absent"
