"""`shared.contracts`: the names both sides import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import contracts as c
from shared.naming import AwsNaming, AzureNaming, twin_name_problems

ROOT = Path(__file__).resolve().parents[2]


def test_contracts_import_only_the_standard_library() -> None:
    """Payload functions import contracts inside Lambdas; it must not pull pydantic or SDKs."""
    code = (
        "import sys; import shared.contracts; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'azure', 'boto3', 'botocore')]; "
        "print(','.join(bad))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


def test_names_are_spelled_as_agreed() -> None:
    assert c.INTER_CLOUD_TOKEN_HEADER == "X-Inter-Cloud-Token"
    assert [e.value for e in c.EventType] == [
        "twin.output.changed", "twin.layer.completed", "twin.deployment.completed", "twin.deployment.failed"]
    assert c.event_source("plant-a") == "/twins/plant-a"
    assert c.url_path(c.Function.HOT_WRITER) == "/api/hot-writer"
    assert c.azure_function_url("x.azurewebsites.net", "adt-pusher") == "https://x.azurewebsites.net/api/adt-pusher"
    assert (c.Telemetry.DEVICE_ID, c.Telemetry.TIMESTAMP) == ("device_id", "timestamp")
    assert (c.StorageKey.PARTITION, c.StorageKey.SORT) == ("device_id", "timestamp")
    assert c.COSMOS_PARTITION_KEY_PATH == "/" + c.StorageKey.PARTITION
    assert c.adt_property_name("temperature") == "lastTemperature"
    assert [str(layer) for layer in c.LAYERS] == [
        "setup", "L0", "L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5"]
    with pytest.raises(ValueError):
        c.route("no-such-function")


def test_setting_and_output_names_equal_their_values() -> None:
    """Enum member names are the env var names, so `Setting.X` always means the string "X"."""
    for member in c.Setting:
        if member is not c.Setting.AZURE_WEBJOBS_STORAGE:
            assert member.name == member.value
    for output in c.Output:
        assert output.name == output.value


def test_receivers_and_their_outputs() -> None:
    receivers = {fn for fn, contract in c.FUNCTIONS.items() if contract.receiver}
    assert receivers == set(c.RECEIVER_OUTPUTS)
    for fn in receivers:
        assert c.FUNCTIONS[fn].layer == c.Layer.L0
        for provider in ("aws", "azure", "gcp"):
            reads = c.settings_read(fn, provider)
            assert {c.Setting.INTER_CLOUD_TOKEN, c.Setting.INTER_CLOUD_TOKEN_PREVIOUS} <= reads


def test_settings_read_depends_on_the_cloud() -> None:
    assert c.Setting.DYNAMODB_TABLE_NAME in c.settings_read("hot-writer", "aws")
    assert c.Setting.COSMOS_DB_KEY in c.settings_read("hot-writer", "azure")
    assert c.Setting.COSMOS_DB_KEY not in c.settings_read("hot-writer", "aws")
    assert c.Setting.REMOTE_ADT_PUSHER_URL in c.settings_read("persister", "aws")
    assert c.Setting.REMOTE_ADT_PUSHER_URL not in c.settings_read("persister", "azure")
    assert c.Setting.ADT_INSTANCE_URL in c.settings_read("persister", "azure")
    with pytest.raises(ValueError, match="unknown provider"):
        c.settings_read("persister", "oracle")


def test_secret_outputs() -> None:
    assert c.is_secret_output("INTER_CLOUD_TOKEN")
    assert c.is_secret_output(c.device_credentials_output("sensor-1"))
    assert not c.is_secret_output("ADT_INSTANCE_URL")
    assert all(c.Setting(s) in c.SECRET_SETTINGS for s in ("INTER_CLOUD_TOKEN", "COSMOS_DB_KEY"))


def test_digital_twin_info_round_trip_and_errors() -> None:
    info = c.DigitalTwinInfo("plant-a", "DEBUG", 30, 90, {"L2": "aws", "L1": "azure"})
    text = info.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert c.DigitalTwinInfo.from_json(text) == info
    assert set(json.loads(text)) == set(c.DigitalTwinInfo.FIELDS)
    for bad, fragment in [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"twin_name": "x"}', "lacks mode"),
        ('{"twin_name":"x","mode":"DEBUG","hot_storage_days":"30","cold_storage_days":1,"providers":{}}',
         "hot_storage_days must be an integer"),
        ('{"twin_name":"x","mode":"DEBUG","hot_storage_days":1,"cold_storage_days":1,"providers":[]}',
         "providers must be an object"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            c.DigitalTwinInfo.from_json(bad)


def test_boundaries_name_a_sender_and_receivers_per_hop() -> None:
    names = [b.name for b in c.BOUNDARIES]
    assert names == ["L1->L2", "L2->L3_hot", "L3_hot->L3_cold", "L3_cold->L3_archive", "L3_hot->L4", "L2->L1"]
    for b in c.BOUNDARIES:
        for output, setting in b.url_settings:
            assert setting.startswith("REMOTE_") and output.endswith("_URL")
            senders = [b.sender]
            if b.sender == c.Function.DT_READER:  # the last-entry URL goes to its own forwarder
                senders.append(c.Function.DT_READER_LAST_ENTRY)
            assert any(setting in c.settings_read(s, "aws") for s in senders)


def test_new_names_follow_the_cloud_rules() -> None:
    az, aws = AzureNaming("plant-a"), AwsNaming("plant-a")
    assert az.function_app("L3_cold") == "plant-a-l3-cold-functions"
    assert az.iot_device("s-1") == "plant-a-s-1"
    assert aws.state_machine() == "plant-a-lambda-chain"
    assert twin_name_problems("plant-a", ["aws", "azure", "gcp"], ["s-1"]) == []
    # The L3_cold Function App name counts towards the Azure site-name limit (60).
    long_name = "a" * 44
    assert any("Function App" in p for p in twin_name_problems(long_name, ["azure"]))


def test_wiring_decisions_match_the_plan() -> None:
    """The runtime's decisions (from DIGITAL_TWIN_INFO.providers) equal the plan's."""
    from plan_specs import all_placements, make_spec

    from shared import wiring
    from shared.plan import build_plan

    for combo in all_placements()[::37]:
        plan = build_plan(make_spec(combo))
        info = c.DigitalTwinInfo.from_json(c.DigitalTwinInfo("plant-a", "DEBUG", 1, 2, plan.placement).to_json())
        placement = info.providers
        assert wiring.update_path(placement) == plan.twin_update
        persister = wiring.function_resource_id(placement["L2"], "L2", c.Function.PERSISTER)
        remote = wiring.sends_remote(placement, "L2", "L3_hot")
        assert ("REMOTE_WRITER_URL" in plan.settings_of(persister)) == remote
        receivers = wiring.boundary_receivers(placement)
        for provider in ("aws", "azure", "gcp"):
            assert bool(plan.resources_in("L0", provider)) == bool(receivers.get(provider))
    assert wiring.boundary("L2->L3_hot").receivers == (c.Function.HOT_WRITER,)
    with pytest.raises(KeyError, match="unknown boundary"):
        wiring.boundary("L9->L10")
