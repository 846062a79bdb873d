"""L1 devices (kind `iot-device`): an IoT thing, an X.509 certificate with its key pair, and a
policy that lets exactly this device connect (client id = thing name) and publish to the twin's
topic; the policy is attached to the certificate and the certificate to the thing.

Ownership. A thing cannot be tagged: its owner is in its attributes (`DigitalTwin`, `ManagedBy`,
written by `CreateThing` itself). A certificate can be neither tagged nor named, so the thing
keeps a record of it: the `certificates` attribute lists the id of every certificate of this
device that may exist. The key pair and a self-signed certificate are made here, so the id
(AWS's certificate id is the SHA-256 of the DER certificate) is known before AWS has it:

1. record the id on the thing (`UpdateThing`);
2. `RegisterCertificateWithoutCA` (SNI-only mode: the device sends SNI, as MQTT clients do);
3. `AttachThingPrincipal`, then the policy (`AttachPolicy`).

A crash after any step leaves a certificate the thing names, so the retry finds it: one it has
no private key for (the key was never recorded) is retired. Retiring goes the other way round
(deactivate, detach, delete, then drop the id from the record), and `delete` removes the thing
only after every certificate it names, so no step of a destroy loses track of one either.

The private key is returned once as the secret output `DEVICE_CREDENTIALS:<device>` (JSON) and
kept by the engine. If the recorded credentials are lost, a new certificate is issued and the old
one retired (an `updated` action), never silently reused.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
from activities.providers.typed import is_ours, may_delete, owner_of, require_own
from activities.registry import register
from shared.contracts import device_credentials_output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import AwsIotDeviceConfig
from shared.resources.ownership import OWNER_TAGS, Owner

MAX_POLICY_VERSIONS = 5
CERTIFICATES_ATTRIBUTE = "certificates"
# A thing without a thing type holds 3 attributes; a value at most 800 characters (12 ids).
MAX_RECORDED_CERTIFICATES = 12
CERTIFICATE_DAYS = 3650


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


def cert_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def cert_arn(config: AwsIotDeviceConfig, certificate_id: str) -> str:
    return f"arn:aws:iot:{config.region}:{account_id()}:cert/{certificate_id}"


def recorded_certificates(thing: dict[str, Any] | None) -> list[str]:
    """The certificate ids the thing's record names (in order, without repeats)."""
    raw = str(((thing or {}).get("attributes") or {}).get(CERTIFICATES_ATTRIBUTE) or "")
    return list(dict.fromkeys(i for i in raw.split(",") if i))


def record_certificates(config: AwsIotDeviceConfig, ids: Iterable[str]) -> None:
    """Make the thing's record name exactly `ids` (an empty value removes the attribute)."""
    value = ",".join(dict.fromkeys(ids))
    if value.count(",") + 1 > MAX_RECORDED_CERTIFICATES:
        raise PermanentError(f"IoT thing {config.name} would record more than {MAX_RECORDED_CERTIFICATES} "
                             "certificates; retire some by hand")
    client("iot", config.region).update_thing(
        thingName=config.name, attributePayload={"attributes": {CERTIFICATES_ATTRIBUTE: value}, "merge": True})


def new_certificate(config: AwsIotDeviceConfig, owner: Owner) -> tuple[str, str, str]:
    """(private key PEM, certificate PEM, certificate id): a P-256 key and a self-signed
    certificate naming the thing and its owner; the id is what AWS will call it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, config.name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, owner.control_plane),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, owner.twin)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    der = cert.public_bytes(serialization.Encoding.DER)
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), hashlib.sha256(der).hexdigest()


def retire_certificate(config: AwsIotDeviceConfig, certificate_id: str) -> None:
    """Deactivate, detach from the thing and its policies, delete (each step tolerant of its
    absence). The thing's record still names it meanwhile: the caller drops it afterwards."""
    iot = client("iot", config.region)
    arn = cert_arn(config, certificate_id)
    ignore_missing(lambda: iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE"))
    ignore_missing(lambda: iot.detach_thing_principal(thingName=config.name, principal=arn))
    attached = get_or_none(lambda: iot.list_attached_policies(target=arn)) or {}
    for pol in attached.get("policies") or []:
        ignore_missing(partial(iot.detach_policy, policyName=pol["policyName"], target=arn))
    ignore_missing(lambda: iot.delete_certificate(certificateId=certificate_id, forceDelete=True))


def policy_arn(config: AwsIotDeviceConfig) -> str:
    return f"arn:aws:iot:{config.region}:{account_id()}:policy/{config.policy_name}"


def policy_tags(config: AwsIotDeviceConfig) -> dict[str, str]:
    listed = client("iot", config.region).list_tags_for_resource(resourceArn=policy_arn(config))
    return {t["Key"]: t["Value"] for t in listed.get("tags") or []}


@register("aws", "iot-device")
class IotDevice(AwsResource[AwsIotDeviceConfig]):
    model = AwsIotDeviceConfig
    label = "IoT thing"

    def describe(self, call: ResourceCall, config: AwsIotDeviceConfig) -> dict[str, Any] | None:
        return get_or_none(lambda: client("iot", config.region).describe_thing(thingName=config.name))

    def owner_tags(self, call: ResourceCall, config: AwsIotDeviceConfig, current: Any) -> dict[str, str]:
        return {k: v for k, v in (current.get("attributes") or {}).items() if k in OWNER_TAGS}

    def converge(self, call: ResourceCall, config: AwsIotDeviceConfig, action: Action) -> EnsureResult:
        iot = client("iot", config.region)
        thing = config.name
        owner = owner_of(call, config)

        def changed() -> None:
            nonlocal action
            if action == "unchanged":
                action = "updated"

        described = self.found(call, config)
        if described is None:
            iot.create_thing(thingName=thing, attributePayload={"attributes": owner.tags()})
            action = "created"
        else:
            have = described.get("attributes") or {}
            fix = owner.missing(have)
            # `device_id` (earlier versions) makes room for the certificate record.
            fix.update({k: "" for k in have if k not in (*OWNER_TAGS, CERTIFICATES_ATTRIBUTE)})
            if fix:
                iot.update_thing(thingName=thing, attributePayload={"attributes": fix, "merge": True})
                changed()
        if self._ensure_policy(call, config):
            changed()

        recorded = recorded_certificates(described)
        attached = [cert_id(p) for p in principals(config)]
        credentials = self._recorded(call, config)
        if credentials is None or cert_id(str(credentials["certificate_arn"])) not in attached:
            credentials = self._issue(config, owner, [*recorded, *attached])
            recorded = [*recorded, cert_id(credentials["certificate_arn"])]
            changed()
        current = cert_id(str(credentials["certificate_arn"]))
        stale = [i for i in dict.fromkeys([*recorded, *attached]) if i != current]
        if stale:
            # Named on the thing before any is detached, so a crash mid-way loses none.
            record_certificates(config, [*stale, current])
            for old in stale:
                retire_certificate(config, old)
            record_certificates(config, [current])
            changed()
        elif recorded != [current]:
            record_certificates(config, [current])  # one issued before the record existed
            changed()
        arn = str(credentials["certificate_arn"])
        on_cert = iot.list_attached_policies(target=arn).get("policies") or []
        if config.policy_name not in {p.get("policyName") for p in on_cert}:
            iot.attach_policy(policyName=config.policy_name, target=arn)
            changed()
        output = device_credentials_output(config.device_id)
        return EnsureResult(action=action, outputs={output: json.dumps(credentials, sort_keys=True)})

    def _issue(self, config: AwsIotDeviceConfig, owner: Owner, known: list[str]) -> dict[str, Any]:
        """A new certificate for the thing: recorded on the thing, registered, attached."""
        iot = client("iot", config.region)
        key_pem, cert_pem, new_id = new_certificate(config, owner)
        record_certificates(config, [*known, new_id])
        registered = iot.register_certificate_without_ca(certificatePem=cert_pem, status="ACTIVE")
        if registered["certificateId"] != new_id:
            raise PermanentError(f"IoT Core named certificate {new_id} {registered['certificateId']}: certificate "
                                 "ids are expected to be the SHA-256 of the certificate")
        iot.attach_thing_principal(thingName=config.name, principal=registered["certificateArn"])
        return {
            "thing_name": config.name,
            "client_id": config.name,
            "certificate_arn": registered["certificateArn"],
            "certificate_pem": cert_pem,
            "private_key": key_pem,
            "endpoint": data_endpoint(config.region),
            "topic": config.topic,
        }

    def _ensure_policy(self, call: ResourceCall, config: AwsIotDeviceConfig) -> bool:
        """Create or reconcile the device's policy (another twin's is refused); True if written."""
        iot = client("iot", config.region)
        wanted = policy_document(call, config)
        current = get_or_none(lambda: iot.get_policy(policyName=config.policy_name))
        if current is None:
            iot.create_policy(policyName=config.policy_name, policyDocument=json.dumps(wanted), tags=tag_list(call))
            return True
        have = policy_tags(config)
        require_own(call, config, have, f"IoT policy {config.policy_name}")
        wrote = False
        add = owner_of(call, config).missing(have)
        if add:
            iot.tag_resource(resourceArn=policy_arn(config), tags=[{"Key": k, "Value": v} for k, v in add.items()])
            wrote = True
        if canonical(current.get("policyDocument") or "{}") != canonical(wanted):
            versions = iot.list_policy_versions(policyName=config.policy_name).get("policyVersions") or []
            old = [v for v in versions if not v.get("isDefaultVersion")]
            if len(versions) >= MAX_POLICY_VERSIONS and old:
                iot.delete_policy_version(policyName=config.policy_name, policyVersionId=old[-1]["versionId"])
            iot.create_policy_version(policyName=config.policy_name, policyDocument=json.dumps(wanted),
                                      setAsDefault=True)
            wrote = True
        return wrote

    def _recorded(self, call: ResourceCall, config: AwsIotDeviceConfig) -> dict[str, Any] | None:
        raw = call.current.get(device_credentials_output(config.device_id))
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) and value.get("private_key") and value.get("certificate_arn") else None

    def details(self, call: ResourceCall, config: AwsIotDeviceConfig, current: Any) -> dict[str, Any]:
        # The credentials are never read back (the key is not retrievable); only what exists.
        return {"thing_arn": current.get("thingArn"), "certificates": principals(config),
                "recorded_certificates": recorded_certificates(current), "policy": config.policy_name}

    def remove(self, call: ResourceCall, config: AwsIotDeviceConfig, current: Any) -> bool:
        # Every certificate the thing names or holds first; the thing (and its record) last.
        iot = client("iot", config.region)
        certificates = list(dict.fromkeys([*recorded_certificates(current), *map(cert_id, principals(config))]))
        for certificate in certificates:
            retire_certificate(config, certificate)
        left = [c for c in certificates if get_or_none(lambda c=c: iot.describe_certificate(certificateId=c))]  # type: ignore[misc]
        if left:
            # The thing keeps naming them: the retry (or the next destroy) finds them again.
            raise TransientError(f"IoT certificates {', '.join(left)} of thing {config.name} are not deleted yet")
        ignore_missing(lambda: iot.delete_thing(thingName=config.name))
        return True

    def remaining_parts(self, call: ResourceCall, config: AwsIotDeviceConfig) -> list[str]:
        """The policy, while it is this twin's (the thing, with the certificates it names, is the object)."""
        if get_or_none(lambda: client("iot", config.region).get_policy(policyName=config.policy_name)) is not None \
                and is_ours(call, config, policy_tags(config)):
            return [f"IoT policy {config.policy_name}"]
        return []

    def leftovers(self, call: ResourceCall, config: AwsIotDeviceConfig) -> bool:
        """The device's policy (its versions first; still attached to a stray certificate: detached)."""
        iot = client("iot", config.region)
        policy_name = config.policy_name
        versions = get_or_none(lambda: iot.list_policy_versions(policyName=policy_name))
        if versions is None or not may_delete(call, config, policy_tags(config), f"IoT policy {policy_name}"):
            return False
        for v in versions.get("policyVersions") or []:
            if not v.get("isDefaultVersion"):
                ignore_missing(partial(iot.delete_policy_version, policyName=policy_name, policyVersionId=v["versionId"]))
        for target in (get_or_none(lambda: iot.list_targets_for_policy(policyName=policy_name)) or {}).get(
                "targets") or []:
            ignore_missing(partial(iot.detach_policy, policyName=policy_name, target=target))
        return ignore_missing(lambda: iot.delete_policy(policyName=policy_name))
