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
    account_id,
    canonical,
    cfg,
    client,
    get_or_none,
    ignore_missing,
    name_of,
    naming,
    region,
    tag_list,
)
from activities.providers.aws.iot_topic_rule import data_endpoint
from activities.registry import Provider, register
from shared.contracts import device_credentials_output
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

MAX_POLICY_VERSIONS = 5


def policy_document(call: ResourceCall) -> dict[str, Any]:
    prefix = f"arn:aws:iot:{region(call)}:{account_id(call)}"
    feedback = naming(call).feedback_topic(str(cfg(call, "device_id")))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{prefix}:client/{name_of(call)}"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{prefix}:topic/{cfg(call, 'topic')}"},
            # Event feedback comes back on the device's own topic (event-feedback publishes it).
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{prefix}:topicfilter/{feedback}"},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{prefix}:topic/{feedback}"},
        ],
    }


def _policy_name(call: ResourceCall) -> str:
    return str(cfg(call, "policy_name", name_of(call)))


def _output_name(call: ResourceCall) -> str:
    return device_credentials_output(str(cfg(call, "device_id")))


def principals(call: ResourceCall) -> list[str]:
    found = get_or_none(lambda: client("iot", call).list_thing_principals(thingName=name_of(call)))
    return list((found or {}).get("principals") or [])


def retire_certificate(call: ResourceCall, cert_arn: str) -> None:
    """Detach from the thing and its policies, deactivate, delete (tolerant of each step's absence)."""
    iot = client("iot", call)
    cert_id = cert_arn.rsplit("/", 1)[-1]
    ignore_missing(lambda: iot.detach_thing_principal(thingName=name_of(call), principal=cert_arn))
    attached = get_or_none(lambda: iot.list_attached_policies(target=cert_arn)) or {}
    for pol in attached.get("policies") or []:
        ignore_missing(partial(iot.detach_policy, policyName=pol["policyName"], target=cert_arn))
    ignore_missing(lambda: iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE"))
    ignore_missing(lambda: iot.delete_certificate(certificateId=cert_id, forceDelete=True))


@register("aws", "iot-device")
class IotDevice(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        iot = client("iot", call)
        thing = name_of(call)
        action: Action = "unchanged"

        def changed() -> None:
            nonlocal action
            if action == "unchanged":
                action = "updated"

        attributes = {"DigitalTwin": call.twin, "device_id": str(cfg(call, "device_id"))}
        described = get_or_none(lambda: iot.describe_thing(thingName=thing))
        if described is None:
            iot.create_thing(thingName=thing, attributePayload={"attributes": attributes})
            action = "created"
        elif any((described.get("attributes") or {}).get(k) != v for k, v in attributes.items()):
            iot.update_thing(thingName=thing, attributePayload={"attributes": attributes, "merge": True})
            changed()
        policy_name = _policy_name(call)
        wanted = policy_document(call)
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
        recorded = self._recorded(call)
        attached = principals(call)
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
                "endpoint": data_endpoint(call),
                "topic": str(cfg(call, "topic")),
            }
            iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
            changed()
        cert_arn = str(credentials["certificate_arn"])
        for stale in [p for p in attached if p != cert_arn]:
            retire_certificate(call, stale)
            changed()
        on_cert = iot.list_attached_policies(target=cert_arn).get("policies") or []
        if policy_name not in {p.get("policyName") for p in on_cert}:
            iot.attach_policy(policyName=policy_name, target=cert_arn)
            changed()
        return EnsureResult(action=action, outputs={_output_name(call): json.dumps(credentials, sort_keys=True)})

    def _recorded(self, call: ResourceCall) -> dict[str, Any] | None:
        raw = call.current.get(_output_name(call))
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) and value.get("private_key") else None

    def read(self, call: ResourceCall) -> ReadResult:
        described = get_or_none(lambda: client("iot", call).describe_thing(thingName=name_of(call)))
        if described is None:
            return ReadResult(exists=False)
        # The credentials are never read back (the key is not retrievable); only what exists.
        return ReadResult(exists=True, details={"thing_arn": described.get("thingArn"),
                                                "certificates": principals(call), "policy": _policy_name(call)})

    def delete(self, call: ResourceCall) -> EnsureResult:
        iot = client("iot", call)
        found = False
        for cert in principals(call):
            retire_certificate(call, cert)
            found = True
        found = ignore_missing(lambda: iot.delete_thing(thingName=name_of(call))) or found
        policy_name = _policy_name(call)
        versions = get_or_none(lambda: iot.list_policy_versions(policyName=policy_name))
        if versions is not None:
            for v in versions.get("policyVersions") or []:
                if not v.get("isDefaultVersion"):
                    ignore_missing(partial(iot.delete_policy_version, policyName=policy_name,
                                                  policyVersionId=v["versionId"]))
            # A policy still attached to a certificate (e.g. one not on the thing) is detached first.
            for target in (get_or_none(lambda: iot.list_targets_for_policy(policyName=policy_name)) or {}).get(
                    "targets") or []:
                ignore_missing(partial(iot.detach_policy, policyName=policy_name, target=target))
            found = ignore_missing(lambda: iot.delete_policy(policyName=policy_name)) or found
        return EnsureResult(action="deleted" if found else "absent")
