"""Every step of a multi-call `ensure`/`delete` is findable on retry (issue 12 item 5), shown on
the IoT device, whose certificate can be neither tagged nor named: the cloud state a process
killed between two calls leaves behind is set up exactly (the provider's own steps up to the
kill), then the retry runs through the real provider. Nothing of the twin may be left over."""

from __future__ import annotations

import json
from typing import Any

from ownership_kit import Driver, example, plan_of, renamed

from activities.providers.aws import iot_device
from activities.providers.aws._common import client
from activities.providers.typed import config_of
from shared.resources.aws import AwsIotDeviceConfig

RID = "aws/L1/device-climate-sensor-1"


def _device(twin: str) -> tuple[Driver, AwsIotDeviceConfig]:
    d = Driver(plan_of(renamed(example("aws-to-azure"), twin)))
    return d, config_of(d.call(RID), AwsIotDeviceConfig)


def _certificates(sandbox: Any, twin: str) -> list[str]:
    """The twin's IoT certificates the sandbox holds (their subject names the owner)."""
    iot = client("iot", "eu-central-1")
    ids = [r["id"].rsplit("/", 1)[-1] for r in sandbox.aws.list_resources() if r["type"] == "iot:certificate"]
    return [i for i in ids if f"OU={twin}" in _subject(iot, i)]


def _subject(iot: Any, certificate_id: str) -> str:
    from cryptography import x509

    pem = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["certificatePem"]
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def test_a_certificate_registered_but_never_attached_is_found_and_retired(sandbox: Any) -> None:
    d, config = _device("crashed-create")
    d.ensure_all("aws/setup/resource-group")
    iot = client("iot", config.region)
    owner = config.owner
    assert owner is not None
    # The killed attempt: thing and policy made, the certificate recorded and registered, then
    # the process died before AttachThingPrincipal (no credentials were ever recorded).
    iot.create_thing(thingName=config.name, attributePayload={"attributes": owner.tags()})
    _, pem, stray = iot_device.new_certificate(config, owner)
    iot_device.record_certificates(config, [stray])
    assert iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")["certificateId"] == stray

    result = d.ensure(RID)  # the retry
    attached = [p.rsplit("/", 1)[-1] for p in iot.list_thing_principals(thingName=config.name)["principals"]]
    assert len(attached) == 1 and attached[0] != stray
    assert _certificates(sandbox, "crashed-create") == attached, "the stray certificate is left over"
    thing = iot.describe_thing(thingName=config.name)
    assert iot_device.recorded_certificates(thing) == attached
    assert result.action == "updated"  # (the engine reports it `created`: nothing recorded it yet)

    # Destroy killed between DetachThingPrincipal and DeleteCertificate: the certificate is no
    # longer on the thing, but the thing's record still names it.
    iot.update_certificate(certificateId=attached[0], newStatus="INACTIVE")
    iot.detach_thing_principal(thingName=config.name, principal=iot_device.cert_arn(config, attached[0]))
    assert d.delete(RID).action == "deleted"  # the retry
    assert _certificates(sandbox, "crashed-create") == []
    left = [r["id"] for r in sandbox.aws.list_resources() if "crashed-create" in r["id"]
            and r["type"].startswith("iot:")]
    assert left == []


def test_a_thing_from_before_the_record_keeps_its_certificate(sandbox: Any) -> None:
    """A thing an earlier version made (`device_id` attribute, an AWS-made certificate, no record):
    its credentials stay valid; the record is written and `device_id` makes room for it."""
    d, config = _device("older")
    d.ensure_all("aws/setup/resource-group")
    first = d.ensure(RID)
    iot = client("iot", config.region)
    # Back to the older shape: another certificate (AWS-made) in place, the record gone.
    made = iot.create_keys_and_certificate(setAsActive=True)
    iot.update_thing(thingName=config.name, attributePayload={
        "attributes": {"device_id": config.device_id, iot_device.CERTIFICATES_ATTRIBUTE: ""}, "merge": True})
    for principal in iot.list_thing_principals(thingName=config.name)["principals"]:
        iot_device.retire_certificate(config, principal.rsplit("/", 1)[-1])
    iot.attach_thing_principal(thingName=config.name, principal=made["certificateArn"])
    output = next(iter(first.outputs))
    credentials = {**json.loads(first.outputs[output]), "certificate_arn": made["certificateArn"],
                   "certificate_pem": made["certificatePem"], "private_key": made["keyPair"]["PrivateKey"]}
    d.outputs[RID] = {output: json.dumps(credentials, sort_keys=True)}

    again = d.ensure(RID)
    assert json.loads(again.outputs[output])["certificate_arn"] == made["certificateArn"]
    attributes = iot.describe_thing(thingName=config.name)["attributes"]
    assert attributes[iot_device.CERTIFICATES_ATTRIBUTE] == made["certificateId"]
    assert "device_id" not in attributes
    assert d.delete(RID).action == "deleted"
