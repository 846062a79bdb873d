"""What every Azure resource module shares: clients from the credentials seam, ARM ids, and the
monitor-style lifecycle of an ARM resource (`ArmResource`), typed by its kind's configuration.

Long-running operations are started with `polling=False` (one request, no polling thread) and
then observed by GETting the resource: its `provisioningState` says whether the operation is
still running, has failed (the PUT is issued again: a reconcile) or is done. So no activity
blocks on a slow cloud operation and the same code serves all three ARM LRO styles.

Ownership: a tracked resource carries its owner in its ARM tags, written by the PUT that creates
it (`owned_tags`); a proxy resource (a blob container, a Cosmos container, a subscription, a
device, a model ...) has none and is its resource group's, whose tags name the twin.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from activities.clouds import ARM_SCOPE, Clouds, clouds_from_environ
from activities.providers.typed import TypedProvider, may_delete, owner_of, require_own
from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.resources.azure import AzureConfig, ReferencedKind, ResourceRef
from shared.resources.base import C
from shared.resources.ownership import claim

T = TypeVar("T")

SUCCEEDED = "succeeded"
FAILED = {"failed", "canceled", "cancelled"}
# After this many failed LRO attempts on one resource, stop retrying: a person must look.
MAX_LRO_ATTEMPTS = 4
REAL_POLL_SECONDS = 15.0
SANDBOX_POLL_SECONDS = 0.2
# How long after ARM accepted a create a read may still answer 404 (its read path lags behind the
# write): within it a missing resource is waited for, after it the create is issued again.
REAL_VISIBILITY_GRACE_SECONDS = 300.0
SANDBOX_VISIBILITY_GRACE_SECONDS = 15.0


def clouds() -> Clouds:
    return clouds_from_environ()


_client_cache: dict[tuple[str, str, str], Any] = {}
_client_lock = threading.Lock()


def mgmt(client_cls: type[T], cl: Clouds | None = None) -> T:
    """An azure-mgmt client from the seam, cached per process and configuration."""
    cl = cl or clouds()
    key = (os.environ.get(ControlPlaneSetting.SANDBOX_DIR, ""), cl.environ.get(ControlPlaneSetting.AZURE_SUBSCRIPTION_ID, ""), client_cls.__name__)
    with _client_lock:
        client = _client_cache.get(key)
        if client is None:
            client = cl.azure_mgmt_client(client_cls)
            _client_cache[key] = client
    return client  # type: ignore[no-any-return]


def warm_up() -> None:
    """Create the management clients of every Azure kind (kept per process by `mgmt`) and the
    credential they share while the host is idle: a cold host's first deployment then does not pay
    for them on its critical path. Makes no call to any cloud."""
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.cosmosdb import CosmosDBManagementClient
    from azure.mgmt.dashboard import DashboardManagementClient
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.web import WebSiteManagementClient

    cl = clouds()
    for client_cls in (ResourceManagementClient, ManagedServiceIdentityClient, StorageManagementClient,
                       WebSiteManagementClient, CosmosDBManagementClient, IotHubClient, EventGridManagementClient,
                       AuthorizationManagementClient, AzureDigitalTwinsManagementClient, DashboardManagementClient):
        mgmt(client_cls, cl)


def poll_seconds(cl: Clouds | None = None) -> float:
    return SANDBOX_POLL_SECONDS if (cl or clouds()).is_sandbox else REAL_POLL_SECONDS


def visibility_grace_seconds(cl: Clouds | None = None) -> float:
    return SANDBOX_VISIBILITY_GRACE_SECONDS if (cl or clouds()).is_sandbox else REAL_VISIBILITY_GRACE_SECONDS


def subscription_id() -> str:
    """The subscription the control plane deploys into (the credentials seam's)."""
    return clouds().azure_subscription_id()


def rg_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def arm_id(sub: str, rg: str, provider_type: str, name: str) -> str:
    """`/subscriptions/../resourceGroups/../providers/{Namespace/type}/{name}`."""
    return f"{rg_id(sub, rg)}/providers/{provider_type}/{name}"


# ARM types of the plan's kinds that other resources point at (`ResourceRef`).
SCOPE_TYPES: dict[ReferencedKind, str] = {
    "iot-hub": "Microsoft.Devices/IotHubs",
    "digital-twins": "Microsoft.DigitalTwins/digitalTwinsInstances",
    "storage-account": "Microsoft.Storage/storageAccounts",
    "function-app": "Microsoft.Web/sites",
    "grafana": "Microsoft.Dashboard/grafana",
    "cosmos-account": "Microsoft.DocumentDB/databaseAccounts",
    "key-vault": "Microsoft.KeyVault/vaults",
    "eventgrid-topic": "Microsoft.EventGrid/topics",
    "app-insights": "Microsoft.Insights/components",
    "durable-task-scheduler": "Microsoft.DurableTask/schedulers",
}


def ref_id(config: AzureConfig, ref: ResourceRef) -> str:
    """The ARM id of a resource of the twin's resource group that `config` refers to (kind
    `subscription`: the subscription `ref.name`)."""
    if ref.kind == "subscription":
        return f"/subscriptions/{ref.name}"
    return arm_id(subscription_id(), config.resource_group, SCOPE_TYPES[ref.kind], ref.name)


def resource_group_tags(resource_group: str) -> dict[str, str] | None:
    """The tags of a resource group (None when it does not exist): the owner of what is in it."""
    from azure.mgmt.resource.resources import ResourceManagementClient

    group = get_or_none(lambda: mgmt(ResourceManagementClient).resource_groups.get(resource_group))
    return None if group is None else dict(group.tags or {})


def require_own_group(call: ResourceCall, config: AzureConfig) -> None:
    """Refuse to write into another twin's resource group (`ForeignObject`)."""
    require_own(call, config, resource_group_tags(config.resource_group) or {},
                f"resource group {config.resource_group}")


def may_delete_in_group(call: ResourceCall, config: AzureConfig) -> bool:
    """Whether a delete may remove an object of this resource group (not another twin's)."""
    return may_delete(call, config, resource_group_tags(config.resource_group) or {},
                      f"resource group {config.resource_group}")


def get_or_none(fn: Callable[[], T]) -> T | None:
    """`fn()` (an SDK GET), or None when the resource (or its parent) does not exist."""
    try:
        return fn()
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise


def enum_str(value: Any) -> str:
    """An SDK enum's wire value (`str()` of some SDK enums is 'Type.MEMBER'), or str(value)."""
    return "" if value is None else str(getattr(value, "value", value))


def state_of(model: Any) -> str:
    """`provisioningState` of a deserialized ARM model, lower case ('' when absent)."""
    for holder in (model, getattr(model, "properties", None)):
        value = getattr(holder, "provisioning_state", None) if holder is not None else None
        if value:
            # Some SDKs give an enum (str() is 'ProvisioningState.SUCCEEDED'), others a string.
            return enum_str(value).lower()
    return ""


def deterministic_guid(*parts: str) -> str:
    """A stable GUID for names that must be GUIDs (role assignments): same inputs, same name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "twin-control-plane:" + "|".join(p.lower() for p in parts)))


def principal_from_token(token: str) -> str:
    """The `oid` claim of a bearer token (the calling principal), without verifying it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        oid = claims.get("oid")
    except (IndexError, ValueError, AttributeError) as exc:
        raise PermanentError("the deployer's ARM token carries no readable 'oid' claim") from exc
    if not isinstance(oid, str) or not oid:
        raise PermanentError("the deployer's ARM token carries no 'oid' claim (object id of the principal)")
    return oid


def deployer_principal_id(cl: Clouds | None = None) -> str:
    """The object id of the principal the control plane acts as (it needs data-plane roles too)."""
    cl = cl or clouds()
    token = cl.azure_credential().get_token(ARM_SCOPE).token
    return principal_from_token(token)


class Throttle:
    """Keeps writes to one key (a twin id) under a rate: Digital Twins allows 10 per second."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> None:
        with self._lock:
            now = time.monotonic()
            due = self._last.get(key, 0.0) + self.interval
            delay = max(0.0, due - now)
            self._last[key] = max(now, due)
        if delay:
            time.sleep(delay)


class ArmResource(TypedProvider[C]):
    """The lifecycle of one ARM resource, monitor style. Subclasses fill in the specifics; each
    operation parses the configuration once and hands it to them. An object of another twin is
    refused by `ensure`, absent to `read` and left alone by `delete`. An `ensure` that finds
    nothing answers `created` before it PUTs (the first poll does), so the decision survives a
    host killed during the create (`activities.providers.typed.to_create`)."""

    #: what a person reads in progress and errors
    label = "resource"
    #: the type takes ARM tags (a tracked resource): its PUT writes `owned_tags`; otherwise the
    #: resource is its resource group's
    tagged = True

    # --- the specifics ---------------------------------------------------------------------

    def get(self, call: ResourceCall, config: C) -> Any:
        """The current resource (a deserialized SDK model) or None."""
        raise PermanentError(f"{type(self).__name__} does not define get")

    def put(self, call: ResourceCall, config: C, current: Any) -> None:
        """Start the create/update (one request; LROs with `polling=False`)."""
        raise PermanentError(f"{type(self).__name__} does not define put")

    def remove(self, call: ResourceCall, config: C, current: Any) -> None:
        """Start the delete (one request)."""
        raise PermanentError(f"{type(self).__name__} does not define remove")

    def differs(self, call: ResourceCall, config: C, current: Any) -> list[str]:
        """The fields whose current value differs from the desired configuration."""
        return []

    def outputs(self, call: ResourceCall, config: C, current: Any) -> dict[str, str]:
        return {}

    def details(self, current: Any) -> dict[str, Any]:
        return {"id": getattr(current, "id", None), "provisioningState": state_of(current)}

    def ready(self, current: Any) -> bool:
        """Done provisioning (some types have a second state, e.g. IoT Hub `Active`)."""
        return state_of(current) in ("", SUCCEEDED)

    # --- ownership -------------------------------------------------------------------------

    def owner_tags(self, call: ResourceCall, config: C, current: Any) -> dict[str, str]:
        """The tags naming the owner of `current`: its own, or its resource group's."""
        if self.tagged:
            return dict(getattr(current, "tags", None) or {})
        group = getattr(config, "resource_group", None)
        return (resource_group_tags(group) or {}) if isinstance(group, str) else {}

    def owned_tags(self, call: ResourceCall, config: C, current: Any) -> dict[str, str]:
        """The tags a PUT writes: the current ones (others' kept) with the owner's."""
        have = dict((getattr(current, "tags", None) or {}) if current is not None else {})
        return {**have, **owner_of(call, config).tags()}

    def changes(self, call: ResourceCall, config: C, current: Any) -> list[str]:
        """`differs`, and `tags` when the owner tags are missing (an adopted or older object)."""
        out = self.differs(call, config, current)
        if self.tagged and owner_of(call, config).missing(getattr(current, "tags", None)):
            out.append("tags")
        return out

    def _check_owner(self, call: ResourceCall, config: C, current: Any) -> None:
        require_own(call, config, self.owner_tags(call, config, current), f"{self.label} {config.name}")

    def _ours(self, call: ResourceCall, config: C, current: Any) -> bool:
        return claim(owner_of(call, config), self.owner_tags(call, config, current)).allowed

    # --- the lifecycle ---------------------------------------------------------------------

    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self.ensure_config(call, self.config(call))

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self.poll_config(call, self.config(call))

    def ensure_config(self, call: ResourceCall, config: C) -> EnsureResult:
        """`ensure` with the configuration parsed (a kind made of parts walks each with it)."""
        current = self.get(call, config)
        if current is None:
            # The decision first (`to_create`): the poll issues the PUT.
            return self._pending(config, "created", 0, poll_after=0.0)
        self._check_owner(call, config, current)  # another twin's: refused before any write
        if self._running(current):
            # Another operation (ours from an earlier attempt, or someone else's) is under way.
            return self._pending(config, "updated", 0)
        if state_of(current) not in FAILED and not self.changes(call, config, current):
            return EnsureResult("unchanged", self.outputs(call, config, current))
        self.put(call, config, current)
        return self._settle(call, config, "updated", 1, put_at=time.time())

    def poll_config(self, call: ResourceCall, config: C) -> EnsureResult:
        """`poll` with the configuration parsed."""
        token = call.pending.token if call.pending is not None else {}
        op = token.get("op", "put")
        attempts = int(token.get("attempts", 1))
        if op == "delete":
            return self._poll_delete(call, config, attempts)
        action: Action = token.get("action", "updated")
        put_at = token.get("put_at")
        current = self.get(call, config)
        if current is None and isinstance(put_at, int | float) and time.time() - put_at < visibility_grace_seconds():
            # Accepted but not readable yet (eventual visibility): wait rather than create it again.
            return self._pending(config, action, attempts, put_at=put_at)
        if current is None or state_of(current) in FAILED:
            if attempts >= MAX_LRO_ATTEMPTS:
                raise PermanentError(
                    f"{self.label} {config.name}: provisioning failed {attempts} times; see the Azure activity log"
                )
            self.put(call, config, current)
            return self._settle(call, config, action, attempts + 1, put_at=time.time())
        if self._running(current) or not self.ready(current):
            return self._pending(config, action, attempts)
        return EnsureResult(action, self.outputs(call, config, current))

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        current = self.get(call, config)
        if current is None:
            return ReadResult(False)
        if not self._ours(call, config, current):
            return ReadResult(False, details={"owner": "another twin"})
        outputs = self.outputs(call, config, current) if not self._running(current) and self.ready(current) else {}
        return ReadResult(True, outputs, self.details(current))

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.get(call, config)
        if current is None:
            return EnsureResult("absent")
        if not may_delete(call, config, self.owner_tags(call, config, current), f"{self.label} {config.name}"):
            return EnsureResult("absent")  # another twin's: nothing of this twin is there
        if state_of(current) != "deleting":
            self.remove(call, config, current)
        if self.get(call, config) is None:
            return EnsureResult("deleted")
        return EnsureResult("deleted", pending=self._pending_token(config, {"op": "delete", "attempts": 1}))

    def _poll_delete(self, call: ResourceCall, config: C, attempts: int) -> EnsureResult:
        current = self.get(call, config)
        if current is None:
            return EnsureResult("deleted")
        if state_of(current) != "deleting":
            # The delete failed (or was cancelled): start it again.
            if attempts >= MAX_LRO_ATTEMPTS:
                raise PermanentError(f"{self.label} {config.name}: deleting failed {attempts} times")
            self.remove(call, config, current)
            attempts += 1
        return EnsureResult("deleted", pending=self._pending_token(config, {"op": "delete", "attempts": attempts}))

    def _settle(self, call: ResourceCall, config: C, action: Action, attempts: int,
                put_at: float | None = None) -> EnsureResult:
        current = self.get(call, config)
        if current is not None and not self._running(current) and state_of(current) not in FAILED and self.ready(current):
            return EnsureResult(action, self.outputs(call, config, current))
        return self._pending(config, action, attempts, put_at=put_at)

    def _pending(self, config: C, action: Action, attempts: int, put_at: float | None = None,
                 poll_after: float | None = None) -> EnsureResult:
        token: dict[str, Any] = {"op": "put", "action": action, "attempts": attempts}
        if put_at is not None:
            token["put_at"] = put_at  # when ARM accepted the create: reads may lag behind it
        return EnsureResult(action, pending=self._pending_token(config, token, poll_after))

    def _pending_token(self, config: C, token: dict[str, Any], poll_after: float | None = None) -> Pending:
        return Pending(token=token, poll_after_seconds=poll_seconds() if poll_after is None else poll_after,
                       description=f"{self.label} {config.name}")

    @staticmethod
    def _running(current: Any) -> bool:
        state = state_of(current)
        return bool(state) and state != SUCCEEDED and state not in FAILED


def transient_on(statuses: set[int], message: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: HTTP errors with one of `statuses` become a TransientError with `message`."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        def inner(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except HttpResponseError as exc:
                if exc.status_code in statuses:
                    raise TransientError(f"{message} (HTTP {exc.status_code})") from exc
                raise

        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner

    return wrap
