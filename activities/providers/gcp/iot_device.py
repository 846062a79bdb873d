"""L1 devices (kind `iot-device`): Cloud IoT Core was retired in 2023, so a device publishes to the
twin's telemetry topic with credentials of its own: a service account per device whose only grant
is `roles/pubsub.publisher` on that topic, and a key of that account.

The private key exists only in the `CreateServiceAccountKey` answer: it is returned once, inside
the secret output `DEVICE_CREDENTIALS:<device>` (JSON: the key file, the topic, the attribute that
names the device), and kept by the engine. If the recorded credentials are lost or their key was
deleted, a new key is issued and every other key of the account deleted (an `updated` action),
never silently reused. The account's description names its owner (service accounts take no labels):
another twin's device account is refused, and left alone by a delete; the publisher grant is
taken back only for an account that is this twin's or gone.

Crash windows: an account created but not yet granted is found by name and granted on the retry; a
key created but never recorded (the host killed before the engine kept the output) is found by
listing the account's keys and deleted once the retry has issued the one it records.

Pub/Sub does not tell a subscriber which account published a message, so a device's key lets it
publish messages naming another device of the same twin; the grant keeps it to this topic.

Feedback (when planned: `feedback_topic`): the device's own pull subscription on the feedback
topic, filtered on its device id attribute (`attributes.deviceId = "<device>"`; a filter cannot be
changed, so a subscription with another filter or topic is made again), labelled with the twin,
and `roles/pubsub.subscriber` on that subscription only for the device's account. The credentials
name it (`feedback_subscription`). Its labels name its owner like every labelled object's: another
twin's subscription under the name is refused before anything is written (never deleted, reused or
granted), an unlabelled one adopted, and a delete leaves another's alone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    account_marks,
    adopt_account,
    change_policy,
    get_or_none,
    iam_admin,
    ignore_missing,
    labelled,
    labels,
    log,
    marks_from_labels,
    members_of,
    missing_labels,
    owner_description,
    project_of,
    publisher,
    subscriber,
)
from activities.providers.gcp.service_account import account_name
from activities.providers.typed import call_owner, refuse_foreign
from activities.registry import register
from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE, device_credentials_output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import GcpIotDeviceConfig
from shared.resources.ownership import Claim, claim

PUBLISHER = "roles/pubsub.publisher"
SUBSCRIBER = "roles/pubsub.subscriber"
FEEDBACK_ACK_DEADLINE_SECONDS = 60
CREDENTIALS_KIND = "gcp-pubsub-service-account"


def topic_path(config: GcpIotDeviceConfig) -> str:
    return f"projects/{project_of(config)}/topics/{config.topic}"


def _member(config: GcpIotDeviceConfig) -> str:
    return f"serviceAccount:{account_email(config.service_account, project_of(config))}"


def _topic_policy(config: GcpIotDeviceConfig) -> tuple[Any, Any]:
    client, topic = publisher(), topic_path(config)
    return (lambda: client.get_iam_policy(request={"resource": topic}),
            lambda p: client.set_iam_policy(request={"resource": topic, "policy": p}))


def subscription_path(config: GcpIotDeviceConfig) -> str | None:
    if config.feedback_subscription is None:
        return None
    return f"projects/{project_of(config)}/subscriptions/{config.feedback_subscription}"


def feedback_filter(config: GcpIotDeviceConfig) -> str:
    return f'attributes.{PUBSUB_DEVICE_ID_ATTRIBUTE} = "{config.device_id}"'


def subscription_claim(call: ResourceCall, subscription: Any) -> Claim:
    """How the call's twin stands to `subscription` (`pubsub_v1.Subscription`), by its labels."""
    return claim(labelled(call_owner(call)), marks_from_labels(subscription.labels))


def own_feedback_subscription(call: ResourceCall, config: GcpIotDeviceConfig) -> Any:
    """The device's feedback subscription as it is now (None: none), refused (`ForeignObject`)
    when its labels name another owner."""
    name = subscription_path(config)
    if name is None:
        return None
    current = get_or_none(lambda: subscriber().get_subscription(request={"subscription": name}))
    if current is not None:
        refuse_foreign(call, f"feedback subscription {config.feedback_subscription}", call_owner(call),
                       subscription_claim(call, current))
    return current


def ensure_feedback_subscription(call: ResourceCall, config: GcpIotDeviceConfig, current: Any) -> bool:
    """The device's filtered pull subscription and its consume grant; True if anything was written.
    `current`: the subscription `own_feedback_subscription` found (and checked)."""
    from google.api_core.exceptions import AlreadyExists, NotFound

    name = subscription_path(config)
    if name is None or config.feedback_topic is None:
        return False
    client = subscriber()
    topic = f"projects/{project_of(config)}/topics/{config.feedback_topic}"
    wrote = False
    if current is not None and (current.topic != topic or current.filter != feedback_filter(config)):
        ignore_missing(lambda: client.delete_subscription(request={"subscription": name}))  # a filter is fixed
        current, wrote = None, True
    if current is None:
        try:
            client.create_subscription(request={
                "name": name, "topic": topic, "filter": feedback_filter(config), "labels": labels(call),
                "ack_deadline_seconds": FEEDBACK_ACK_DEADLINE_SECONDS})
        except AlreadyExists:
            own_feedback_subscription(call, config)  # made by a concurrent run: refused if not ours
        except NotFound:
            raise TransientError(f"device {config.device_id}: feedback topic {config.feedback_topic} does not exist "
                                 "yet") from None
        wrote = True
    elif missing_labels(current.labels, call):  # unlabelled: adopt it (others' labels kept)
        client.update_subscription(request={
            "subscription": {"name": name, "labels": {**current.labels, **labels(call)}},
            "update_mask": {"paths": ["labels"]}})
        wrote = True
    if change_policy(lambda: client.get_iam_policy(request={"resource": name}),
                     lambda p: client.set_iam_policy(request={"resource": name, "policy": p}),
                     SUBSCRIBER, add={_member(config)}):
        wrote = True
    return wrote


def delete_feedback_subscription(call: ResourceCall, config: GcpIotDeviceConfig) -> bool:
    """Delete the device's feedback subscription (its grant goes with it), unless another's; True
    if it deleted one."""
    name = subscription_path(config)
    if name is None:
        return False
    current = get_or_none(lambda: subscriber().get_subscription(request={"subscription": name}))
    if current is None:
        return False
    found = subscription_claim(call, current)
    if not found.allowed:
        log.warning("%s: feedback subscription %s belongs to %s: left alone", call.resource.id,
                    config.feedback_subscription, found.holder)
        return False
    return ignore_missing(lambda: subscriber().delete_subscription(request={"subscription": name}))


def _delete_key(name: str) -> None:
    iam_admin().delete_service_account_key(request={"name": name})


def user_keys(config: GcpIotDeviceConfig) -> list[str]:
    """Names of the account's user-managed keys (Google's own system keys are not listed)."""
    from google.cloud.iam_admin_v1 import types

    found = iam_admin().list_service_account_keys(request={
        "name": account_name(project_of(config), config.service_account),
        "key_types": [types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED]})
    return [k.name for k in found.keys]


@register("gcp", "iot-device")
class IotDevice(GcpResource[GcpIotDeviceConfig]):
    model = GcpIotDeviceConfig
    label = "device account"
    labelled = False

    def describe(self, call: ResourceCall, config: GcpIotDeviceConfig) -> Any:
        name = account_name(project_of(config), config.service_account)
        return get_or_none(lambda: iam_admin().get_service_account(request={"name": name}))

    def converge(self, call: ResourceCall, config: GcpIotDeviceConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict, NotFound

        def changed() -> None:
            nonlocal action
            if action == "unchanged":
                action = "updated"

        project = project_of(config)
        account = self.found(call, config)
        subscription = own_feedback_subscription(call, config)  # another's: refused before any write
        if account is None:
            with contextlib.suppress(Conflict):  # created by a concurrent run
                iam_admin().create_service_account(request={
                    "name": f"projects/{project}", "account_id": config.service_account,
                    "service_account": {"display_name": f"device {config.device_id}"[:100],
                                        "description": owner_description(call)}})
            account = self.found(call, config)
            action = "created"
        if account is not None and account.description != owner_description(call):
            adopt_account(account_name(project, config.service_account), call)  # unowned: mark it ours
            changed()
        get, set_ = _topic_policy(config)
        try:
            if change_policy(get, set_, PUBLISHER, add={_member(config)}):
                changed()
        except NotFound:
            raise TransientError(f"device {config.device_id}: topic {config.topic} does not exist yet") from None
        if ensure_feedback_subscription(call, config, subscription):
            changed()
        keys = user_keys(config)
        recorded = self._recorded(call, config)
        credentials = recorded if recorded is not None and self._key_name(config, recorded) in keys else None
        if credentials is None:
            created = iam_admin().create_service_account_key(request={
                "name": account_name(project, config.service_account)})
            credentials = {
                "kind": CREDENTIALS_KIND,
                "device_id": config.device_id,
                "project": project,
                "topic": topic_path(config),
                "device_attribute": PUBSUB_DEVICE_ID_ATTRIBUTE,
                "service_account_key": json.loads(bytes(created.private_key_data)),
            }
            keys = [*keys, created.name]
            changed()
        if credentials.get("feedback_subscription") != subscription_path(config):
            # The same key; the subscription it may read is new (or gone).
            credentials = {k: v for k, v in credentials.items() if k != "feedback_subscription"}
            if subscription_path(config) is not None:
                credentials["feedback_subscription"] = subscription_path(config)
            changed()
        current = self._key_name(config, credentials)
        for stale in [k for k in keys if k != current]:
            ignore_missing(partial(_delete_key, stale))
            changed()
        output = device_credentials_output(config.device_id)
        return EnsureResult(action=action, outputs={output: json.dumps(credentials, sort_keys=True)})

    def _key_name(self, config: GcpIotDeviceConfig, credentials: dict[str, Any]) -> str:
        key_id = (credentials.get("service_account_key") or {}).get("private_key_id")
        return f"{account_name(project_of(config), config.service_account)}/keys/{key_id}"

    def _recorded(self, call: ResourceCall, config: GcpIotDeviceConfig) -> dict[str, Any] | None:
        raw = call.current.get(device_credentials_output(config.device_id))
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("kind") != CREDENTIALS_KIND:
            return None
        key = value.get("service_account_key")
        return value if isinstance(key, dict) and key.get("private_key") else None

    def owner_marks(self, call: ResourceCall, config: GcpIotDeviceConfig, current: Any) -> Mapping[str, str]:
        return account_marks(current)

    def details(self, call: ResourceCall, config: GcpIotDeviceConfig, current: Any) -> dict[str, Any]:
        # The key is never read back (Google does not return it again); only what exists.
        return {"service_account": current.email, "keys": len(user_keys(config)), "topic": topic_path(config)}

    def remove(self, call: ResourceCall, config: GcpIotDeviceConfig, current: Any) -> bool:
        # The grant first: once an account is deleted, Google shows its bindings as
        # `deleted:serviceAccount:...?uid=...` (a retry after a kill between the two still finds both).
        self._revoke(config)
        delete_feedback_subscription(call, config)
        name = account_name(project_of(config), config.service_account)
        ignore_missing(lambda: iam_admin().delete_service_account(request={"name": name}))  # its keys go with it
        return True

    def leftovers(self, call: ResourceCall, config: GcpIotDeviceConfig) -> bool:
        """The publisher grant on the topic (gone with the topic if that was deleted first); only
        when the account is gone or this twin's: never another twin's grant."""
        account = self.describe(call, config)
        if account is not None and not self.ours(call, config, account):
            return False
        deleted = delete_feedback_subscription(call, config)  # an account deleted by hand left it
        return self._revoke(config) or deleted

    def _revoke(self, config: GcpIotDeviceConfig) -> bool:
        from google.api_core.exceptions import NotFound

        get, set_ = _topic_policy(config)
        try:
            return change_policy(get, set_, PUBLISHER, remove=self._grants(config, get()))
        except NotFound:
            return False

    def _grants(self, config: GcpIotDeviceConfig, policy: Any) -> set[str]:
        """The account's publisher members on the topic, as it is now or as Google shows a deleted one."""
        member = _member(config)
        return {m for m in members_of(policy, PUBLISHER) if m == member or m.startswith(f"deleted:{member}?uid=")}

    def remaining_parts(self, call: ResourceCall, config: GcpIotDeviceConfig) -> list[str]:
        from google.api_core.exceptions import NotFound

        if self.describe(call, config) is not None:
            return []  # another's account (its grant is its own); ours is reported by `remaining`
        try:
            granted = self._grants(config, publisher().get_iam_policy(request={"resource": topic_path(config)}))
        except NotFound:
            return []
        return [f"{PUBLISHER} on {config.topic} for {config.service_account}"] if granted else []
