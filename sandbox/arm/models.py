"""Azure Resource Manager state: a generic resource store keyed by resource id, long-running
operations with provisioning delays, and the per-type behaviour our SDK calls depend on.

Time is evaluated lazily: an operation records when it is due, and every request first
finishes the operations whose time has come (`sweep`). No background tasks, so a stopped
sandbox leaves nothing running.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from sandbox.arm.ids import CollectionPath, ResourceId, is_under, parse
from sandbox.core.context import SandboxContext

log = logging.getLogger("sandbox.arm")


class ArmError(Exception):
    """An ARM error answer: `{"error": {"code", "message"}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, namespace: str = "") -> dict[str, Any]:
        """The error in the shape the resource provider publishes (`namespace`, lower case): most
        wrap it in `error`; IoT Hub answers its ErrorDetails unwrapped."""
        if namespace == "microsoft.devices":
            phrase = HTTPStatus(self.status).phrase.replace(" ", "") if self.status in _STATUSES else str(self.status)
            return {"code": self.code, "httpStatusCode": phrase, "message": self.message}
        return {"error": {"code": self.code, "message": self.message}}


_STATUSES = {s.value for s in HTTPStatus}


# --- per-type behaviour ------------------------------------------------------------------------

SYNC = "sync"  # the answer carries the final state (a delay is spent inside the request)
ASYNC_OP = "async_op"  # Azure-AsyncOperation header, polled for {"status": ...}
ASYNC_OP_AND_LOCATION = "async_op_location"  # both headers, empty 202 (Cosmos databases/containers)
LOCATION = "location"  # 202 + Location; the Location answers 202 until done, then the result
STATE = "state"  # no header: the body's provisioningState is polled on the resource itself


@dataclass(frozen=True)
class TypeBehavior:
    put_style: str = SYNC
    create_status: int = 201
    update_status: int = 200
    pending_state: str = "Creating"  # provisioningState while a create runs
    delete_style: str = SYNC
    delete_status: int = 200
    # Whether the type's published schema has `properties.provisioningState`. A type without one
    # never shows it, and a resource of it being created stays invisible (404) until created.
    declares_state: bool = True
    # Whether the published DELETE answers 202 with the resource (provisioningState Deleting).
    delete_answers_body: bool = False


BEHAVIORS: dict[str, TypeBehavior] = {
    "microsoft.resources/resourcegroups": TypeBehavior(
        SYNC, 201, 200, delete_style=LOCATION, delete_status=202
    ),
    "microsoft.managedidentity/userassignedidentities": TypeBehavior(SYNC, 201, 200, declares_state=False),
    # Storage create: 202 + Location with Retry-After and an empty body; the Location gives the account.
    "microsoft.storage/storageaccounts": TypeBehavior(LOCATION, 202, 200, pending_state="Creating"),
    "microsoft.storage/storageaccounts/blobservices/containers": TypeBehavior(SYNC, 201, 200, declares_state=False),
    # App Service answers plan and site PUTs synchronously with 200 after doing the work.
    "microsoft.web/serverfarms": TypeBehavior(SYNC, 200, 200),
    "microsoft.web/sites": TypeBehavior(SYNC, 200, 200, declares_state=False),
    "microsoft.devices/iothubs": TypeBehavior(
        ASYNC_OP, 201, 200, "Accepted", ASYNC_OP, 202, delete_answers_body=True
    ),
    # Event Grid: 201 only, with Azure-AsyncOperation, body starting at Creating.
    "microsoft.eventgrid/topics": TypeBehavior(ASYNC_OP, 201, 201, "Creating", ASYNC_OP, 202),
    "microsoft.eventgrid/systemtopics": TypeBehavior(ASYNC_OP, 201, 201, "Creating", ASYNC_OP, 202),
    "microsoft.eventgrid/eventsubscriptions": TypeBehavior(ASYNC_OP, 201, 201, "Creating", ASYNC_OP, 202),
    "microsoft.eventgrid/systemtopics/eventsubscriptions": TypeBehavior(
        ASYNC_OP, 201, 201, "Creating", ASYNC_OP, 202
    ),
    "microsoft.eventgrid/topics/eventsubscriptions": TypeBehavior(
        ASYNC_OP, 201, 201, "Creating", ASYNC_OP, 202
    ),
    # Cosmos account PUT: 200 (only) + Azure-AsyncOperation.
    "microsoft.documentdb/databaseaccounts": TypeBehavior(ASYNC_OP, 200, 200, "Creating", ASYNC_OP, 202),
    "microsoft.documentdb/databaseaccounts/sqldatabases": TypeBehavior(
        ASYNC_OP_AND_LOCATION, 202, 202, "Creating", ASYNC_OP_AND_LOCATION, 202, declares_state=False
    ),
    "microsoft.documentdb/databaseaccounts/sqldatabases/containers": TypeBehavior(
        ASYNC_OP_AND_LOCATION, 202, 202, "Creating", ASYNC_OP_AND_LOCATION, 202, declares_state=False
    ),
    # Digital Twins: the body's provisioningState is polled (no header), delete 202 + Location.
    "microsoft.digitaltwins/digitaltwinsinstances": TypeBehavior(
        STATE, 201, 200, "Provisioning", LOCATION, 202, delete_answers_body=True
    ),
    "microsoft.dashboard/grafana": TypeBehavior(ASYNC_OP, 201, 200, "Accepted", ASYNC_OP, 202),
    "microsoft.authorization/roleassignments": TypeBehavior(SYNC, 201, 200, declares_state=False),
    # The control plane's own (install): Application Insights answers its PUT at once (200 only);
    # a Log Analytics workspace is created with Azure-AsyncOperation; a Durable Task Scheduler
    # and its task hubs too (201 + Azure-AsyncOperation), deleted with 202 + Location.
    "microsoft.insights/components": TypeBehavior(SYNC, 200, 200),
    "microsoft.operationalinsights/workspaces": TypeBehavior(ASYNC_OP, 201, 200, "Creating", ASYNC_OP, 202),
    "microsoft.durabletask/schedulers": TypeBehavior(ASYNC_OP, 201, 200, "Provisioning", LOCATION, 202),
    "microsoft.durabletask/schedulers/taskhubs": TypeBehavior(ASYNC_OP, 201, 200, "Provisioning", LOCATION, 202),
}
DEFAULT_BEHAVIOR = TypeBehavior()

# Children that exist implicitly with their parent (no PUT creates them).
IMPLICIT_TYPES = frozenset(
    {
        "microsoft.storage/storageaccounts/blobservices",
        "microsoft.web/sites/config",
        "microsoft.web/sites/host",
        "microsoft.web/sites/basicpublishingcredentialspolicies",
        "microsoft.web/sites/extensions",
        "microsoft.web/sites/functions",
        "microsoft.devices/iothubs/iothubkeys",
    }
)

# Types whose names are global (a DNS name), so the same name elsewhere is taken.
GLOBAL_NAME_TYPES = {
    "microsoft.storage/storageaccounts": (
        "StorageAccountAlreadyTaken",
        "The storage account named {name} is already taken.",
    ),
    "microsoft.web/sites": ("Conflict", "Website with given name {name} already exists."),
    "microsoft.devices/iothubs": ("IotHubNameNotAvailable", "IotHub name '{name}' is not available"),
    "microsoft.documentdb/databaseaccounts": (
        "BadRequest",
        "Dns record for {name} under zone Document is already taken.",
    ),
}

# What Cosmos DB 2026-03-15 marks required in a create/update body, by JSON path (the document's
# `required`; a request without them is refused with 400).
COSMOS_REQUIRED: dict[str, tuple[str, ...]] = {
    "microsoft.documentdb/databaseaccounts": (
        "properties", "properties.locations", "properties.databaseAccountOfferType"),
    "microsoft.documentdb/databaseaccounts/sqldatabases": (
        "properties", "properties.resource", "properties.resource.id"),
    "microsoft.documentdb/databaseaccounts/sqldatabases/containers": (
        "properties", "properties.resource", "properties.resource.id"),
}

BUILTIN_ROLES: dict[str, tuple[str, str]] = {
    # guid: (roleName, description)
    "bcd981a7-7f74-457b-83e1-cceb9e632ffe": (
        "Azure Digital Twins Data Owner",
        "Full access to Azure Digital Twins data-plane",
    ),
    "d57506d4-4c8d-48b1-8587-93c323f6a5a3": (
        "Azure Digital Twins Data Reader",
        "Read-only access to Azure Digital Twins data-plane",
    ),
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": (
        "Key Vault Secrets Officer",
        "Perform any action on the secrets of a key vault, except manage permissions.",
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Read secret contents."),
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": (
        "Key Vault Administrator",
        "Perform all data plane operations on a key vault and all objects in it.",
    ),
    "21090545-7ca7-4776-b22c-e363652d74d2": (
        "Key Vault Reader",
        "Read metadata of key vaults and its certificates, keys, and secrets; cannot read secret values.",
    ),
    "22926164-76b3-42b3-bc55-97df8dab3e41": ("Grafana Admin", "Built-in Grafana admin role"),
    "a79a5197-3a5c-4973-a920-486035ffd60f": ("Grafana Editor", "Built-in Grafana Editor role"),
    "60921a7e-fef1-4a43-9b16-a26c52ad4769": ("Grafana Viewer", "Built-in Grafana Viewer role"),
    "4fc6c259-987e-4a07-842e-c321cc9d413f": (
        "IoT Hub Data Contributor",
        "Allows full access to IoT Hub data plane operations.",
    ),
    "4ea46cd5-c1b2-4a8e-910b-273211f9ce47": (
        "IoT Hub Registry Contributor",
        "Allows full access to IoT Hub device registry.",
    ),
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": (
        "Storage Blob Data Owner",
        "Full access to Azure Storage blob containers and data.",
    ),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Storage Blob Data Contributor",
        "Read, write, and delete Azure Storage containers and blobs.",
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": (
        "Storage Queue Data Contributor",
        "Read, write, and delete Azure Storage queues and queue messages.",
    ),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": (
        "Storage Table Data Contributor",
        "Read, write, and delete Azure Storage tables and entities.",
    ),
    "d5a91429-5739-47e2-a06b-3470a27159e7": (
        "EventGrid Data Sender",
        "Allows send access to event grid events.",
    ),
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": (
        "User Access Administrator",
        "Lets you manage user access to Azure resources.",
    ),
    "3913510d-42f4-4e42-8a64-420c390055eb": (
        "Monitoring Metrics Publisher",
        "Enables publishing metrics against Azure resources",
    ),
    "0ad04412-c4d5-4796-b79c-f76d14c8d402": (
        "Durable Task Data Contributor",
        "Durable Task role for all data access operations.",
    ),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": (
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles.",
    ),
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": (
        "Owner",
        "Grants full access to manage all resources, including assigning roles.",
    ),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": (
        "Reader",
        "View all resources, but does not allow you to make any changes.",
    ),
}

ROLE_ASSIGNMENT_TYPE = "microsoft.authorization/roleassignments"
# Azure Resource Manager's own events (Event Grid system topics of type Resources.Subscriptions /
# Resources.ResourceGroups carry them).
RESOURCE_WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
RESOURCE_DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
SITE_TYPE = "microsoft.web/sites"
FLEX_PLAN_SKUS = frozenset({"fc1"})
FLEX_REJECTED_SETTINGS = ("SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD")


def new_key() -> str:
    """A base64-looking 64-byte secret, as Azure account keys are."""
    import base64

    return base64.b64encode(secrets.token_bytes(64)).decode()


# --- state -------------------------------------------------------------------------------------


@dataclass
class Operation:
    op_id: str
    kind: str  # "put" | "delete"
    resource_key: str
    resource_id: str
    type_key: str
    namespace: str
    location: str
    due_at: float
    started_at: float
    fail: bool
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    finished_at: float | None = None
    polled: int = 0


@dataclass
class FunctionInfo:
    name: str
    trigger: str  # binding type, e.g. httpTrigger
    param: str
    route: str | None = None
    extra_bindings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Deployment:
    id: str
    site_key: str
    kind: str  # "ZipDeploy" | "OneDeploy"
    received_at: float
    due_at: float
    zip_path: str
    author: str
    status: int = 1  # Kudu DeployStatus: 1 Building, 3 Failed, 4 Success
    log: list[dict[str, Any]] = field(default_factory=list)
    functions: list[FunctionInfo] = field(default_factory=list)
    failure: str | None = None
    end_at: float | None = None
    polled: int = 0
    indexing: bool = False  # its functions are being found by importing the package (see sandbox.kudu.models)

    @property
    def complete(self) -> bool:
        return self.status in (3, 4)


@dataclass
class SiteState:
    """What a Function App holds beyond its ARM body: settings, keys, deployments, indexed functions."""

    app_settings: dict[str, str] = field(default_factory=dict)
    scm_basic_auth: bool = False
    ftp_basic_auth: bool = False
    publishing_password: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    master_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    default_function_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    function_keys: dict[str, str] = field(default_factory=dict)
    system_keys: dict[str, str] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    # Functions of the last successful deployment, and what the last trigger sync indexed.
    deployed_functions: list[FunctionInfo] | None = None
    indexed_functions: list[FunctionInfo] = field(default_factory=list)


@dataclass
class Resource:
    rid: ResourceId
    body: dict[str, Any]  # what the resource holds; the answer is `ArmBackend.render(resource)`
    etag: str
    secrets: dict[str, str] = field(default_factory=dict)  # keys, generated once per resource
    # ARM's provisioning state, kept apart from the body: shown only where the type declares it.
    state: str = "Succeeded"
    # Until then reads answer 404 as if it did not exist yet: ARM's read path lags behind a write
    # it accepted (eventual visibility), and some types only appear once created.
    visible_at: float = 0.0

    def visible(self, now: float | None = None) -> bool:
        return self.visible_at <= (time.time() if now is None else now)


class ArmBackend:
    """The resource store of one sandbox. All public methods are thread-safe."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.lock = threading.RLock()
        self.resources: dict[str, Resource] = {}
        self.operations: dict[str, Operation] = {}
        self.sites: dict[str, SiteState] = {}  # site resource key -> state
        self._etag_counter = 0

    # --- basics ---

    @property
    def subscription_id(self) -> str:
        return self.ctx.subscription_id

    def next_etag(self) -> str:
        self._etag_counter += 1
        return f'"{self._etag_counter:08x}-0000-0000-0000-{uuid.uuid4().hex[:12]}"'

    def behavior(self, type_key: str) -> TypeBehavior:
        return BEHAVIORS.get(type_key, DEFAULT_BEHAVIOR)

    def get(self, key: str) -> Resource | None:
        """The stored resource, visible to readers or not (for writes and internal checks)."""
        with self.lock:
            return self.resources.get(key.lower())

    def read(self, key: str) -> Resource | None:
        """The resource as a reader sees it: None while it is not visible yet."""
        res = self.get(key)
        return res if res is not None and res.visible() else None

    def render(self, res: Resource) -> dict[str, Any]:
        """The resource as its type's published schema answers it."""
        body = copy.deepcopy(res.body)
        props = body.setdefault("properties", {})
        if self.behavior(res.rid.type_key).declares_state:
            props["provisioningState"] = res.state
        else:
            props.pop("provisioningState", None)
        if res.rid.type_key == SITE_TYPE:
            # "not returned in response to normal create and read requests" (Site.siteConfig);
            # GET .../config/web answers it.
            props.pop("siteConfig", None)
        return body

    def exists(self, rid: ResourceId) -> bool:
        """True if the resource exists, counting implicit children of existing parents."""
        with self.lock:
            if rid.is_subscription:
                return rid.subscription.lower() == self.subscription_id.lower()
            if rid.key in self.resources:
                return True
            if rid.type_key in IMPLICIT_TYPES and rid.parent is not None:
                parent = parse(rid.parent)
                return isinstance(parent, ResourceId) and self.exists(parent)
            return False

    def check_parents(self, rid: ResourceId) -> None:
        """Raise the ARM 404 that a request on `rid` gets when its subscription, group or parent is missing."""
        if rid.subscription.lower() != self.subscription_id.lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{rid.subscription}' could not be found."
            )
        if rid.is_resource_group or rid.is_subscription:
            return
        if rid.resource_group is not None:
            rg_key = f"/subscriptions/{rid.subscription}/resourcegroups/{rid.resource_group}".lower()
            rg = self.resources.get(rg_key)
            if rg is None:
                raise ArmError(
                    404, "ResourceGroupNotFound", f"Resource group '{rid.resource_group}' could not be found."
                )
            if rg.state == "Deleting":
                raise ArmError(
                    409,
                    "ResourceGroupBeingDeleted",
                    f"The resource group '{rid.resource_group}' is in deprovisioning state and cannot perform this operation.",
                )
        if rid.parent is None:
            return
        parent = parse(rid.parent)
        if not isinstance(parent, ResourceId) or parent.is_resource_group or parent.is_subscription:
            return
        if not self.exists(parent):
            if rid.type_key in (ROLE_ASSIGNMENT_TYPE, "microsoft.eventgrid/eventsubscriptions"):
                raise ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource '{parent.type}/{parent.name}' under resource group "
                    f"'{parent.resource_group}' was not found.",
                )
            raise ArmError(
                404,
                "ParentResourceNotFound",
                f"Can not perform requested operation on nested resource. Parent resource "
                f"'{parent.name}' not found.",
            )

    def not_found(self, rid: ResourceId) -> ArmError:
        self.check_parents(rid)
        if rid.is_resource_group:
            return ArmError(404, "ResourceGroupNotFound", f"Resource group '{rid.name}' could not be found.")
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{rid.type}/{rid.name}' under resource group '{rid.resource_group}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    # --- time ---

    def sweep(self, now: float | None = None) -> None:
        """Finish every operation whose time has come."""
        now = time.time() if now is None else now
        with self.lock:
            for op in list(self.operations.values()):
                if op.status == "InProgress" and op.due_at <= now:
                    self._finish(op, now)
            # Forget finished operations after an hour; SDKs poll them within seconds.
            for op_id in [
                k for k, o in self.operations.items() if o.finished_at and now - o.finished_at > 3600
            ]:
                del self.operations[op_id]

    def _finish(self, op: Operation, now: float) -> None:
        op.finished_at = now
        res = self.resources.get(op.resource_key)
        if op.fail:
            op.status = "Failed"
            if res is not None:
                res.state = "Failed" if op.kind == "put" else "Succeeded"
                if not self.behavior(res.rid.type_key).declares_state:
                    # A failed create of a type without a state leaves nothing behind to read.
                    res.visible_at = min(res.visible_at, now)
            return
        op.status = "Succeeded"
        if op.kind == "put":
            if res is not None:
                res.state = "Succeeded"
                res.visible_at = min(res.visible_at, now)  # a finished create is readable
                self._settle(res)
                self.resource_written(res.rid)
        else:
            self.delete_now(op.resource_key)

    def _settle(self, res: Resource) -> None:
        """Fields that change when provisioning ends (e.g. IoT Hub `state: Active`)."""
        props = res.body.setdefault("properties", {})
        if res.rid.type_key == "microsoft.devices/iothubs":
            props["state"] = "Active"

    def start_operation(self, kind: str, res: Resource, delay: float) -> Operation:
        now = time.time()
        op = Operation(
            op_id=str(uuid.uuid4()),
            kind=kind,
            resource_key=res.rid.key,
            resource_id=res.rid.id,
            type_key=res.rid.type_key,
            namespace=res.rid.namespace,
            location=str(res.body.get("location") or "global").replace(" ", "").lower(),
            due_at=now + delay,
            started_at=now,
            fail=self.ctx.faults.fail_once(f"{kind}:{res.rid.key}"),
        )
        with self.lock:
            self.operations[op.op_id] = op
        return op

    def pending_operation(self, key: str) -> Operation | None:
        with self.lock:
            for op in self.operations.values():
                if op.resource_key == key and op.status == "InProgress":
                    return op
        return None

    # --- deletion ---

    def resource_written(self, rid: ResourceId) -> None:
        """A write succeeded: Azure raises `Microsoft.Resources.ResourceWriteSuccess` for it."""
        self.ctx.emit_resource_event(RESOURCE_WRITE_SUCCESS, rid.id, f"{rid.type}/write")

    def delete_now(self, key: str, notify: bool = True) -> list[str]:
        """Remove a resource and everything below it (children, extension resources), calling
        each type's hooks; returns the removed ids. `notify`: raise `ResourceDeleteSuccess` for
        the resource asked for (not for each child, as Azure does)."""
        key = key.lower()
        with self.lock:
            top = self.resources.get(key)
            if top is not None and notify:
                self.ctx.emit_resource_event(RESOURCE_DELETE_SUCCESS, top.rid.id, f"{top.rid.type}/delete")
            doomed = sorted((k for k in self.resources if is_under(k, key)), key=len, reverse=True)
            removed: list[str] = []
            for k in doomed:
                res = self.resources.pop(k)
                removed.append(res.rid.id)
                if res.rid.type_key == ROLE_ASSIGNMENT_TYPE:
                    self.ctx.role_assignments.revoke(res.rid.id)
                if res.rid.type_key == SITE_TYPE:
                    self.sites.pop(k, None)
                    self.ctx.function_hosts.pop(k, None)
                hooks = self.ctx.hooks_for(res.rid.type)
                if hooks is not None:
                    hooks.on_delete(res.rid.id)
                for op in self.operations.values():
                    if op.resource_key == k and op.status == "InProgress" and op.kind == "put":
                        op.status = "Canceled"
                        op.finished_at = time.time()
            self.ctx.role_assignments.revoke_under(key)
            return removed

    def reset(self) -> None:
        """Delete every resource (calling hooks, so the data planes forget their data too)."""
        with self.lock:
            for key in sorted(self.resources, key=len):
                if key in self.resources:
                    self.delete_now(key, notify=False)
            self.operations.clear()
            self.sites.clear()

    # --- queries ---

    def list_collection(self, coll: CollectionPath) -> list[Resource]:
        scope_key = coll.scope.lower()
        type_key = coll.type.lower()
        with self.lock:
            out: list[Resource] = []
            for res in self.resources.values():
                if type_key and res.rid.type_key != type_key:
                    continue
                if not res.visible():
                    continue
                if not type_key and not res.rid.is_top_level:
                    continue  # `/resources` lists tracked top-level resources only, as ARM does
                parent_key = (res.rid.parent or "").lower()
                if type_key == "microsoft.resources/resourcegroups" or (type_key and type_key.count("/") > 1):
                    if parent_key != scope_key:
                        continue
                elif not is_under(parent_key, scope_key):
                    continue
                out.append(res)
            return sorted(out, key=lambda r: r.rid.key)

    def list_all_summaries(self) -> list[dict[str, Any]]:
        self.sweep()
        with self.lock:
            return [
                {
                    "id": r.rid.id,
                    "type": r.rid.type,
                    "name": r.rid.name,
                    "provisioningState": r.state,
                    "visible": r.visible(),
                }
                for r in sorted(self.resources.values(), key=lambda r: r.rid.key)
            ]

    def find_site_by_name(self, name: str) -> tuple[Resource, SiteState] | None:
        with self.lock:
            for key, res in self.resources.items():
                if res.rid.type_key == SITE_TYPE and res.rid.name.lower() == name.lower():
                    return res, self.sites.setdefault(key, SiteState())
        return None

    def site_state(self, site_key: str) -> SiteState:
        with self.lock:
            return self.sites.setdefault(site_key.lower(), SiteState())

    def is_flex_site(self, site: Resource) -> bool:
        props = site.body.get("properties", {})
        if props.get("functionAppConfig"):
            return True
        farm_id = props.get("serverFarmId")
        if isinstance(farm_id, str):
            farm = self.get(farm_id)
            if farm is not None:
                sku = farm.body.get("sku") or {}
                return str(sku.get("name", "")).lower() in FLEX_PLAN_SKUS
        return False

    def global_name_owner(self, rid: ResourceId) -> Resource | None:
        """Another resource of a globally named type holding the same name."""
        with self.lock:
            for res in self.resources.values():
                if (
                    res.rid.type_key == rid.type_key
                    and res.rid.name.lower() == rid.name.lower()
                    and res.rid.key != rid.key
                ):
                    return res
        return None

    def role_assignments_iter(self) -> Iterable[Resource]:
        with self.lock:
            return [r for r in self.resources.values() if r.rid.type_key == ROLE_ASSIGNMENT_TYPE]


def arm_backend(ctx: SandboxContext) -> ArmBackend:
    """The ARM store of `ctx` (one per sandbox), created on first use. Kudu and the control endpoint
    reach ARM's state through this, never through module globals."""
    backend = getattr(ctx, "_arm_backend", None)
    if backend is None:
        backend = ArmBackend(ctx)
        ctx._arm_backend = backend  # type: ignore[attr-defined]
    return backend


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """ARM PATCH semantics for the fields we use: objects merge, everything else replaces; tags replace."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if k != "tags" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def notify_site_listener(ctx: SandboxContext, method: str, site_key: str) -> None:
    """Tell the `Microsoft.Web/sites` hook object about a site event it opted into by having `method`.
    A listener's failure is logged; it never fails the request that caused the event."""
    listener = getattr(ctx.hooks_for("Microsoft.Web/sites"), method, None)
    if not callable(listener):
        return
    try:
        listener(site_key)
    except Exception:
        log.exception("site listener %s failed for %s", method, site_key)
