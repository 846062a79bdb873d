"""L1 devices (kind `iot-device`): an IoT thing, an X.509 certificate with its key pair, and a
policy that lets exactly this device connect (client id = thing name) and publish to the twin's
topic; the policy is attached to the certificate and the certificate to the thing.

The private key exists only in the `CreateKeysAndCertificate` answer: it is returned once as
the secret output `DEVICE_CREDENTIALS:<device>` (JSON) and kept by the engine. If the recorded
credentials are lost, the key cannot be fetched again, so a new certificate is issued and the
old one retired (an `updated` action), never silently reused.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from activities.providers.aws._common import (
    AwsResource,
    account_id,
    canonical,
    client,
    get_or_none,
    ignore_missing,
    naming,
    tag_list,
)
from activities.providers.aws.iot_topic_rule import data_endpoint
from activities.registry import register
from shared.contracts import device_credentials_output
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import AwsIotDeviceConfig

MAX_POLICY_VERSIONS = 5


def policy_document(call: ResourceCall, config: AwsIotDeviceConfig) -> dict[str, Any]:
    prefix = f"arn:aws:iot:{config.region}:{account_id()}"
    feedback = naming(call).feedback_topic(config.device_id)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{prefix}:client/{config.name}"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{prefix}:topic/{config.topic}"},
            # Event feedback comes back on the device's own topic (event-feedback publishes it).
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{prefix}:topicfilter/{feedback}"},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{prefix}:topic/{feedback}"},
        ],
    }


def principals(config: AwsIotDeviceConfig) -> list[str]:
    found = get_or_none(lambda: client("iot", config.region).list_thing_principals(thingName=config.name))
    return list((found or {}).get("principals") or [])


def retire_certificate(config: AwsIotDeviceConfig, cert_arn: str) -> None:
    """Detach from the thing and its policies, deactivate, delete (tolerant of each step's absence)."""
    iot = client("iot", config.region)
    cert_id = cert_arn.rsplit("/", 1)[-1]
    ignore_missing(lambda: iot.detach_thing_principal(thingName=config.name, principal=cert_arn))
    attached = get_or_none(lambda: iot.list_attached_policies(target=cert_arn)) or {}
    for pol in attached.get("policies") or []:
        ignore_missing(partial(iot.detach_policy, policyName=pol["policyName"], target=cert_arn))
    ignore_missing(lambda: iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE"))
    ignore_missing(lambda: iot.delete_certificate(certificateId=cert_id, forceDelete=True))


@register("aws", "iot-device")
class IotDevice(AwsResource[AwsIotDeviceConfig]):
    model = AwsIotDeviceConfig
    label = "IoT thing"

    def describe(self, call: ResourceCall, config: AwsIotDeviceConfig) -> dict[str, Any] | None:
        return get_or_none(lambda: client("iot", config.region).describe_thing(thingName=config.name))

    def converge(self, call: ResourceCall, config: AwsIotDeviceConfig, action: Action) -> EnsureResult:
        iot = client("iot", config.region)
        thing = config.name

        def changed() -> None:
            nonlocal action
            if action == "unchanged":
                action = "updated"

        attributes = {"DigitalTwin": call.twin, "device_id": config.device_id}
        described = self.describe(call, config)
        if described is None:
            iot.create_thing(thingName=thing, attributePayload={"attributes": attributes})
            action = "created"
        elif any((described.get("attributes") or {}).get(k) != v for k, v in attributes.items()):
            iot.update_thing(thingName=thing, attributePayload={"attributes": attributes, "merge": True})
            changed()
        policy_name = config.policy_name
        wanted = policy_document(call, config)
        current = get_or_none(lambda: iot.get_policy(policyName=policy_name))
        if current is None:
            iot.create_policy(policyName=policy_name, policyDocument=json.dumps(wanted),
                              tags=tag_list(call))
            changed()
        elif canonical(current.get("policyDocument") or "{}") != canonical(wanted):
            versions = iot.list_policy_versions(policyName=policy_name).get("policyVersions") or []
            old = [v for v in versions if not v.get("isDefaultVersion")]
            if len(versions) >= MAX_POLICY_VERSIONS and old:
                iot.delete_policy_version(policyName=policy_name, policyVersionId=old[-1]["versionId"])
            iot.create_policy_version(policyName=policy_name, policyDocument=json.dumps(wanted), setAsDefault=True)
            changed()
        recorded = self._recorded(call, config)
        attached = principals(config)
        credentials: dict[str, Any] | None = None
        if recorded is not None and recorded.get("certificate_arn") in attached:
            credentials = recorded
        else:
            created = iot.create_keys_and_certificate(setAsActive=True)
            credentials = {
                "thing_name": thing,
                "client_id": thing,
                "certificate_arn": created["certificateArn"],
                "certificate_pem": created["certificatePem"],
                "private_key": created["keyPair"]["PrivateKey"],
                "endpoint": data_endpoint(config.region),
                "topic": config.topic,
            }
            iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
            changed()
        cert_arn = str(credentials["certificate_arn"])
        for stale in [p for p in attached if p != cert_arn]:
            retire_certificate(config, stale)
            changed()
        on_cert = iot.list_attached_policies(target=cert_arn).get("policies") or []
        if policy_name not in {p.get("policyName") for p in on_cert}:
            iot.attach_policy(policyName=policy_name, target=cert_arn)
            changed()
        output = device_credentials_output(config.device_id)
        return EnsureResult(action=action, outputs={output: json.dumps(credentials, sort_keys=True)})

    def _recorded(self, call: ResourceCall, config: AwsIotDeviceConfig) -> dict[str, Any] | None:
        raw = call.current.get(device_credentials_output(config.device_id))
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) and value.get("private_key") else None

    def details(self, call: ResourceCall, config: AwsIotDeviceConfig, current: Any) -> dict[str, Any]:
        # The credentials are never read back (the key is not retrievable); only what exists.
        return {"thing_arn": current.get("thingArn"), "certificates": principals(config), "policy": config.policy_name}

    def remove(self, call: ResourceCall, config: AwsIotDeviceConfig, current: Any) -> bool:
        for cert in principals(config):
            retire_certificate(config, cert)
        ignore_missing(lambda: client("iot", config.region).delete_thing(thingName=config.name))
        return True

    def leftovers(self, call: ResourceCall, config: AwsIotDeviceConfig) -> bool:
        """The device's policy (its versions first; still attached to a stray certificate: detached)."""
        iot = client("iot", config.region)
        policy_name = config.policy_name
        versions = get_or_none(lambda: iot.list_policy_versions(policyName=policy_name))
        if versions is None:
            return False
        for v in versions.get("policyVersions") or []:
            if not v.get("isDefaultVersion"):
                ignore_missing(partial(iot.delete_policy_version, policyName=policy_name, policyVersionId=v["versionId"]))
        for target in (get_or_none(lambda: iot.list_targets_for_policy(policyName=policy_name)) or {}).get(
                "targets") or []:
            ignore_missing(partial(iot.detach_policy, policyName=policy_name, target=target))
        return ignore_missing(lambda: iot.delete_policy(policyName=policy_name))
