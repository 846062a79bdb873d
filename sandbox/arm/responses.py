"""ARM's HTTP surface: parse the request, apply it to the store, answer as ARM does.

One catch-all handler serves every path under `/subscriptions/` (ARM paths are case-insensitive
and open-ended); this module dispatches on method, resource type and action.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from sandbox.arm import enrich
from sandbox.arm.ids import CollectionPath, PathError, ResourceId, parse
from sandbox.arm.models import (
    ASYNC_OP,
    ASYNC_OP_AND_LOCATION,
    BUILTIN_ROLES,
    COSMOS_REQUIRED,
    FLEX_REJECTED_SETTINGS,
    LOCATION,
    ROLE_ASSIGNMENT_TYPE,
    SITE_TYPE,
    STATE,
    SYNC,
    ArmBackend,
    ArmError,
    Operation,
    Resource,
    arm_backend,
    deep_merge,
    notify_site_listener,
)
from sandbox.core.auth import (
    ARM_AUDIENCES,
    audience_from_request,
    principal_from_request,
    unauthorized_response,
    wrong_audience_response,
)
from sandbox.core.context import RoleAssignment, SandboxContext
from sandbox.core.http import json_response

# Items per page of a list; longer lists carry a nextLink, which the SDK pagers follow.
LIST_PAGE_SIZE = 100
OPERATION_RE = re.compile(
    r"^/subscriptions/[^/]+/providers/[^/]+/locations/[^/]+/(operationstatuses|operationresults)/([^/]+)$",
    re.IGNORECASE,
)
TAGS_TYPE = "microsoft.resources/tags"
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
STORAGE_NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")
RG_NAME_RE = re.compile(r"^[-\w._()]{1,90}$")
ROLE_NAME_FILTER_RE = re.compile(r"^\s*roleName\s+eq\s+'(.*)'\s*$", re.IGNORECASE)
PRINCIPAL_FILTER_RE = re.compile(r"principalId\s+eq\s+'([^']*)'", re.IGNORECASE)


def is_operation_poll(request: web.Request) -> bool:
    """LRO status polls are never throttled by the fault injector (contract 4)."""
    return request.method == "GET" and OPERATION_RE.match(request.path) is not None


def provider_namespace(path: str) -> str:
    """The resource provider that answers `path` (the namespace after its last `providers/`), lower case."""
    segments = [p.lower() for p in path.split("/") if p]
    for i in range(len(segments) - 2, -1, -1):
        if segments[i] == "providers":
            return segments[i + 1]
    return "microsoft.resources"


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat().replace("+00:00", "Z")


def _empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers)


class ArmHandler:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    @property
    def backend(self) -> ArmBackend:
        return arm_backend(self.ctx)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        await self.ctx.exchanges.record("arm", request, response)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if principal_from_request(request) is None:
            return unauthorized_response(self.ctx.tenant_id)
        audience = audience_from_request(request) or ""
        if audience not in ARM_AUDIENCES:
            return wrong_audience_response(audience)
        self.backend.sweep()
        try:
            if "api-version" not in request.query:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            m = OPERATION_RE.match(request.path)
            if m:
                return self._poll(request, m.group(1).lower(), m.group(2))
            return await self._dispatch(request)
        except ArmError as exc:
            return json_response(exc.body(provider_namespace(request.path)), exc.status, exc.headers)
        except PathError as exc:
            return json_response(
                {
                    "error": {
                        "code": "InvalidRequestUri",
                        "message": f"{request.method} {request.path}: {exc}",
                    }
                },
                400,
            )

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        if method == "POST":
            return await self._post(request)
        segs = [s for s in request.path.split("/") if s]
        if method == "GET" and len(segs) == 1:
            # GET /subscriptions: the one subscription the sandbox has.
            return self._page(request, [self._subscription_body()])
        if method == "GET" and len(segs) == 4 and segs[2].lower() == "providers":
            # GET /subscriptions/{sub}/providers/{ns}: every provider is registered here.
            self._check_subscription(segs[1])
            return json_response(self._provider_body(segs[1], segs[3]))
        parsed = parse(request.path)
        if isinstance(parsed, CollectionPath):
            if method != "GET":
                raise ArmError(
                    405, "MethodNotAllowed", f"{method} is not allowed on a collection: {request.path}"
                )
            return self._list(request, parsed)
        if parsed.type_key == TAGS_TYPE:
            return await self._tags(request, parsed)
        if method in ("GET", "HEAD"):
            return self._get(request, parsed, head=method == "HEAD")
        if method == "PUT":
            return await self._put(request, parsed)
        if method == "PATCH":
            return await self._patch(request, parsed)
        if method == "DELETE":
            return self._delete(request, parsed)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {request.path}")

    # --- the tags of any resource (Microsoft.Resources/tags/default at its scope) ------------

    async def _tags(self, request: web.Request, rid: ResourceId) -> web.Response:
        """Read or change a resource's tags without touching the rest of it: PUT replaces them,
        PATCH merges, replaces or deletes (`operation`), DELETE removes them all."""
        b = self.backend
        scope = parse(rid.parent or "")
        if rid.name.lower() != "default" or not isinstance(scope, ResourceId) or scope.is_subscription:
            raise ArmError(400, "InvalidRequestUri", f"{request.path}: tags live at <resource id>/providers/"
                           "Microsoft.Resources/tags/default")
        b.check_parents(scope)
        body = {} if request.method in ("GET", "DELETE") else await self._read_json(request)
        with b.lock:
            target = b.read(scope.key)
            if target is None:
                raise b.not_found(scope)
            current = dict(target.body.get("tags") or {})
            if request.method == "GET":
                return json_response(self._tags_body(scope, current))
            if request.method not in ("PUT", "PATCH", "DELETE"):
                raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")
            given = (body.get("properties") or {}).get("tags") if isinstance(body.get("properties"), dict) else None
            if request.method != "DELETE" and (not isinstance(given, dict)
                                                or not all(isinstance(v, str) for v in given.values())):
                raise ArmError(400, "InvalidRequestContent", "properties.tags: an object of tag names to strings "
                               "is required.")
            operation = "Replace" if request.method == "PUT" else str(body.get("operation", ""))
            if request.method == "DELETE":
                tags: dict[str, str] = {}
            elif operation == "Replace":
                tags = dict(given or {})
            elif operation == "Merge":
                tags = {**current, **(given or {})}
            elif operation == "Delete":
                tags = {k: v for k, v in current.items()
                        if not (k in (given or {}) and (given or {})[k] in ("", v))}
            else:
                raise ArmError(400, "InvalidRequestContent", "operation: must be Replace, Merge or Delete.")
            target.body["tags"] = tags
            target.etag = b.next_etag()
        b.resource_written(scope)
        if request.method == "DELETE":
            return _empty(200)
        return json_response(self._tags_body(scope, tags))

    @staticmethod
    def _tags_body(scope: ResourceId, tags: dict[str, str]) -> dict[str, Any]:
        return {"id": f"{scope.id}/providers/Microsoft.Resources/tags/default", "name": "default",
                "type": "Microsoft.Resources/tags", "properties": {"tags": tags}}

    # --- GET / HEAD -------------------------------------------------------------------------

    def _get(self, request: web.Request, rid: ResourceId, head: bool) -> web.StreamResponse:
        b = self.backend
        if rid.is_subscription:
            b.check_parents(rid)
            return json_response(self._subscription_body())
        if rid.type_key == "microsoft.authorization/roledefinitions":
            return self._role_definition(rid, head)
        special = self._get_special(rid)
        if special is not None:
            return _empty(204) if head else special
        res = b.read(rid.key)
        if res is None:
            if head:
                try:
                    b.check_parents(rid)
                except ArmError:
                    return _empty(404)
                return _empty(404)
            raise b.not_found(rid)
        if head:
            return _empty(204)
        return self._resource_response(res, 200)

    def _check_subscription(self, subscription: str) -> None:
        if subscription.lower() != self.ctx.subscription_id.lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found."
            )

    def _subscription_body(self) -> dict[str, Any]:
        sub = self.ctx.subscription_id
        return {
            "id": f"/subscriptions/{sub}",
            "subscriptionId": sub,
            "tenantId": self.ctx.tenant_id,
            "displayName": "Sandbox subscription",
            "state": "Enabled",
        }

    def _provider_body(self, subscription: str, namespace: str) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{subscription}/providers/{namespace}",
            "namespace": namespace,
            "registrationState": "Registered",
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [],
        }

    def _get_special(self, rid: ResourceId) -> web.Response | None:
        """GETs on implicit children (site config, policies, functions)."""
        b = self.backend
        t = rid.type_key
        if t not in (
            "microsoft.web/sites/basicpublishingcredentialspolicies",
            "microsoft.web/sites/functions",
            "microsoft.web/sites/extensions",
            "microsoft.web/sites/config",
        ):
            return None
        site = self._site(rid)
        state = b.site_state(site.rid.key)
        if t == "microsoft.web/sites/basicpublishingcredentialspolicies":
            return json_response(enrich.scm_policy_body(rid, state))
        if t == "microsoft.web/sites/functions":
            for fn in state.indexed_functions:
                if fn.name.lower() == rid.name.lower():
                    return json_response(enrich.function_body(self.ctx, site, fn))
            raise ArmError(404, "NotFound", f"Function {rid.name} not found on site {site.rid.name}.")
        if t == "microsoft.web/sites/extensions" and rid.name.lower() == "onedeploy":
            return json_response(enrich.onedeploy_status(site, state))
        if t == "microsoft.web/sites/config" and rid.name.lower() == "web":
            return json_response(enrich.site_config_body(site))
        raise b.not_found(rid)

    def _resource_response(
        self, res: Resource, status: int, headers: dict[str, str] | None = None
    ) -> web.Response:
        out = dict(headers or {})
        out["ETag"] = res.etag
        return json_response(self.backend.render(res), status, out)

    # --- lists ------------------------------------------------------------------------------

    def _list(self, request: web.Request, coll: CollectionPath) -> web.Response:
        b = self.backend
        t = coll.type.lower()
        scope_rid = parse(coll.scope)
        if isinstance(scope_rid, ResourceId):
            if scope_rid.is_subscription:
                b.check_parents(scope_rid)
            elif not b.exists(scope_rid):
                raise b.not_found(scope_rid)
        if t == "microsoft.authorization/roledefinitions":
            return self._page(request, self._role_definitions(request.query.get("$filter", "")))
        if t == "microsoft.web/sites/functions":
            assert isinstance(scope_rid, ResourceId)
            site = self._site_resource(scope_rid)
            state = b.site_state(site.rid.key)
            return self._page(
                request, [enrich.function_body(self.ctx, site, fn) for fn in state.indexed_functions]
            )
        items = b.list_collection(coll)
        if t == ROLE_ASSIGNMENT_TYPE:
            items = self._filter_role_assignments(items, coll, request.query.get("$filter", ""))
        return self._page(request, [b.render(r) for r in items])

    def _page(self, request: web.Request, values: list[dict[str, Any]]) -> web.Response:
        """One page of a list, with `nextLink` carrying `$skiptoken` as ARM pages long lists."""
        raw = request.query.get("$skiptoken", "0")
        try:
            start = int(raw)
        except ValueError:
            raise ArmError(
                400, "InvalidSkipToken", f"$skiptoken: '{raw}' is not a token this list returned."
            ) from None
        if start < 0 or start > len(values):
            raise ArmError(400, "InvalidSkipToken", f"$skiptoken: '{raw}' is out of range.")
        end = start + LIST_PAGE_SIZE
        next_link = None
        if end < len(values):
            query = dict(request.query)
            query["$skiptoken"] = str(end)
            next_link = f"{self.ctx.azure_base_url}{request.path}?{urlencode(query)}"
        return json_response({"value": values[start:end], "nextLink": next_link})

    def _filter_role_assignments(
        self, items: list[Resource], coll: CollectionPath, flt: str
    ) -> list[Resource]:
        scope_key = coll.scope.lower()
        # Role assignments listed at a scope include those above it (they apply there too).
        everything = list(self.backend.role_assignments_iter())
        out = []
        for r in everything:
            ra_scope = str(r.body["properties"]["scope"]).lower()
            if not (
                scope_key == ra_scope
                or scope_key.startswith(ra_scope + "/")
                or ra_scope.startswith(scope_key + "/")
            ):
                continue
            if "atscope()" in flt.lower() and not (
                scope_key == ra_scope or scope_key.startswith(ra_scope + "/")
            ):
                continue
            m = PRINCIPAL_FILTER_RE.search(flt)
            if m and r.body["properties"]["principalId"] != m.group(1):
                continue
            out.append(r)
        return sorted(out, key=lambda r: r.rid.key)

    # --- roles ------------------------------------------------------------------------------

    def _role_definition_body(self, guid: str) -> dict[str, Any]:
        name, description = BUILTIN_ROLES[guid]
        return {
            "id": f"/subscriptions/{self.ctx.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "name": guid,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": name,
                "type": "BuiltInRole",
                "description": description,
                "assignableScopes": ["/"],
                "permissions": [{"actions": [], "notActions": [], "dataActions": [], "notDataActions": []}],
            },
        }

    def _role_definitions(self, flt: str) -> list[dict[str, Any]]:
        if flt:
            m = ROLE_NAME_FILTER_RE.match(flt)
            if m is None:
                raise ArmError(
                    400,
                    "InvalidFilterInQueryString",
                    f"The filter '{flt}' is not supported; use roleName eq '<name>'.",
                )
            wanted = m.group(1).replace("''", "'")
            return [self._role_definition_body(g) for g, (n, _) in BUILTIN_ROLES.items() if n == wanted]
        return [self._role_definition_body(g) for g in BUILTIN_ROLES]

    def _role_definition(self, rid: ResourceId, head: bool) -> web.Response:
        guid = rid.name.lower()
        if guid not in BUILTIN_ROLES:
            raise ArmError(
                404,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{rid.name}' does not exist.",
            )
        return _empty(204) if head else json_response(self._role_definition_body(guid))

    def _put_role_assignment(self, rid: ResourceId, body: dict[str, Any]) -> web.Response:
        b = self.backend
        if not GUID_RE.match(rid.name):
            raise ArmError(
                400,
                "InvalidRoleAssignmentId",
                f"The role assignment ID '{rid.name}' is not valid. The role assignment ID must be a GUID.",
            )
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestContent", "properties: required object is missing.")
        role_def_id = props.get("roleDefinitionId")
        principal_id = props.get("principalId")
        if not isinstance(role_def_id, str) or not role_def_id:
            raise ArmError(
                400, "InvalidRequestContent", "properties.roleDefinitionId: required string is missing."
            )
        if not isinstance(principal_id, str) or not GUID_RE.match(principal_id):
            raise ArmError(
                400,
                "InvalidPrincipalId",
                "properties.principalId: a valid principal ID (a GUID) must be provided.",
            )
        guid = role_def_id.rstrip("/").rsplit("/", 1)[-1].lower()
        if guid not in BUILTIN_ROLES:
            raise ArmError(
                400,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{guid}' does not exist.",
            )
        scope = rid.parent or f"/subscriptions/{rid.subscription}"
        scope_rid = parse(scope)
        if isinstance(scope_rid, ResourceId) and not scope_rid.is_subscription and not b.exists(scope_rid):
            raise b.not_found(scope_rid)
        with b.lock:
            existing = b.get(rid.key)
            for other in b.role_assignments_iter():
                p = other.body["properties"]
                same = (
                    p["principalId"] == principal_id
                    and p["roleDefinitionId"].rstrip("/").rsplit("/", 1)[-1].lower() == guid
                    and str(p["scope"]).lower() == scope.lower()
                )
                if other is existing or same:
                    raise ArmError(
                        409,
                        "RoleAssignmentExists",
                        f"The role assignment already exists. The ID of the existing role assignment is {other.rid.name}.",
                    )
            now = time.time()
            res_body = {
                "id": rid.id,
                "name": rid.name,
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "roleDefinitionId": f"/subscriptions/{rid.subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
                    "principalId": principal_id,
                    "principalType": props.get("principalType") or "ServicePrincipal",
                    "scope": scope,
                    "condition": props.get("condition"),
                    "conditionVersion": props.get("conditionVersion"),
                    "createdOn": _now_iso(now),
                    "updatedOn": _now_iso(now),
                    "createdBy": principal_id,
                    "updatedBy": principal_id,
                    "description": props.get("description"),
                },
            }
            res = Resource(rid, res_body, b.next_etag())
            b.resources[rid.key] = res
            self.ctx.role_assignments.grant(
                RoleAssignment(
                    assignment_id=rid.id,
                    principal_id=principal_id,
                    role_definition_id=guid,
                    scope=scope.lower().rstrip("/"),
                    effective_at=now + self.ctx.faults.profile.rbac_propagation_seconds,
                )
            )
        return json_response(res_body, 201)

    # --- PUT --------------------------------------------------------------------------------

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ArmError(
                400, "InvalidRequestContent", f"The request content is not valid JSON: {exc}"
            ) from None
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return body

    def _preconditions(self, request: web.Request, res: Resource | None) -> None:
        if_match = request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        if (
            if_none_match is not None
            and res is not None
            and (if_none_match.strip() == "*" or if_none_match == res.etag)
        ):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The resource '{res.rid.id}' already exists (If-None-Match: {if_none_match}).",
            )
        if if_match is not None:
            if res is None:
                raise ArmError(
                    412, "PreconditionFailed", "If-Match was given but the resource does not exist."
                )
            if if_match.strip() != "*" and if_match.strip() != res.etag:
                raise ArmError(
                    412,
                    "PreconditionFailed",
                    "The ETag in If-Match does not match the resource's current ETag; it was changed by another request.",
                )

    def _validate_put(self, rid: ResourceId, body: dict[str, Any]) -> None:
        b = self.backend
        t = rid.type_key
        if (
            rid.is_resource_group
            and not RG_NAME_RE.match(rid.name)
            or (rid.is_resource_group and rid.name.endswith("."))
        ):
            raise ArmError(
                400,
                "InvalidResourceGroupName",
                f"Resource group name '{rid.name}' is invalid: up to 90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.",
            )
        if t == "microsoft.storage/storageaccounts" and not STORAGE_NAME_RE.match(rid.name):
            raise ArmError(
                400,
                "AccountNameInvalid",
                f"{rid.name} is not a valid storage account name. Storage account name must be between 3 and 24 "
                "characters in length and use numbers and lower-case letters only.",
            )
        if (rid.is_top_level or rid.is_resource_group) and not body.get("location"):
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if "properties" in body and not isinstance(body["properties"], dict | type(None)):
            raise ArmError(400, "InvalidRequestContent", "properties: must be a JSON object.")
        from sandbox.arm.models import GLOBAL_NAME_TYPES

        conflict = GLOBAL_NAME_TYPES.get(t)
        if conflict is not None and b.global_name_owner(rid) is not None:
            code, template = conflict
            raise ArmError(409, code, template.format(name=rid.name))
        if t == SITE_TYPE:
            farm_id = (body.get("properties") or {}).get("serverFarmId")
            if isinstance(farm_id, str) and farm_id:
                farm = parse(farm_id)
                if not isinstance(farm, ResourceId) or b.get(farm.key) is None:
                    raise ArmError(
                        404, "NotFound", f"Cannot find ServerFarm with name {farm_id.rsplit('/', 1)[-1]}."
                    )
        if t in (
            "microsoft.eventgrid/eventsubscriptions",
            "microsoft.eventgrid/systemtopics/eventsubscriptions",
            "microsoft.eventgrid/topics/eventsubscriptions",
        ):
            self._validate_event_subscription(body)
        if t in COSMOS_REQUIRED:
            self._validate_cosmos(t, body)

    def _validate_cosmos(self, t: str, body: dict[str, Any]) -> None:
        """What Cosmos DB 2026-03-15 requires of a create/update body (DatabaseAccountCreateUpdateParameters,
        Sql{Database,Container}CreateUpdateParameters): refused with 400, as the service does, not stored."""
        for path in COSMOS_REQUIRED[t]:
            node: Any = body
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None or node == "":
                raise ArmError(400, "BadRequest", f"{path}: required property is missing.")
        if t == "microsoft.documentdb/databaseaccounts":
            props = body["properties"]
            if not isinstance(props["locations"], list) or not props["locations"]:
                raise ArmError(400, "BadRequest", "properties.locations: at least one location is required.")
            if props["databaseAccountOfferType"] != "Standard":
                raise ArmError(400, "BadRequest", "properties.databaseAccountOfferType: must be Standard.")

    def _validate_event_subscription(self, body: dict[str, Any]) -> None:
        dest = ((body.get("properties") or {}).get("destination")) or {}
        if not isinstance(dest, dict) or dest.get("endpointType") != "AzureFunction":
            return
        fn_id = (dest.get("properties") or {}).get("resourceId")
        fn_rid = parse(fn_id) if isinstance(fn_id, str) else None
        if not isinstance(fn_rid, ResourceId) or fn_rid.type_key != "microsoft.web/sites/functions":
            raise ArmError(
                400,
                "BadRequest",
                "destination.properties.resourceId must be the resource id of a function (.../sites/{app}/functions/{name}).",
            )
        site = self.backend.get(fn_rid.parent or "")
        indexed = self.backend.site_state(site.rid.key).indexed_functions if site is not None else []
        if not any(f.name.lower() == fn_rid.name.lower() for f in indexed):
            raise ArmError(
                400,
                "BadRequest",
                f"Destination endpoint not found. Resource details: resourceId: {fn_id}. "
                "Deploy the function and sync triggers before subscribing it.",
            )

    async def _put(self, request: web.Request, rid: ResourceId) -> web.StreamResponse:
        b = self.backend
        body = await self._read_json(request)
        t = rid.type_key
        if rid.is_subscription:
            raise ArmError(405, "MethodNotAllowed", "Subscriptions cannot be created through this API.")
        b.check_parents(rid)
        if t == ROLE_ASSIGNMENT_TYPE:
            return self._put_role_assignment(rid, body)
        if t == "microsoft.web/sites/config" and rid.name.lower() == "appsettings":
            return self._put_app_settings(rid, body)
        if t == "microsoft.web/sites/basicpublishingcredentialspolicies":
            return self._put_scm_policy(rid, body)
        if t == "microsoft.web/sites/config" and rid.name.lower() == "web":
            return self._put_site_config(rid, body, merge=False)
        with b.lock:
            existing = b.get(rid.key)
            self._preconditions(request, existing)
            self._validate_put(rid, body)
            if existing is not None and b.pending_operation(rid.key) is not None:
                raise ArmError(
                    409,
                    "AnotherOperationInProgress",
                    f"Another operation on '{rid.id}' is in progress; retry when it completes.",
                )
            if t == SITE_TYPE:
                self._check_flex_settings(rid, body)
            behavior = b.behavior(t)
            new_body = copy.deepcopy(body)
            new_body["id"] = rid.id if existing is None else existing.rid.id
            new_body["name"] = rid.name
            new_body["type"] = rid.type if existing is None else existing.rid.type
            props = new_body.get("properties")
            if not isinstance(props, dict):
                props = {}
                new_body["properties"] = props
            props.pop("provisioningState", None)  # read-only: ARM keeps its own
            res = Resource(
                existing.rid if existing else rid,
                new_body,
                b.next_etag(),
                secrets=existing.secrets if existing else {},
            )
            enrich.enrich(self.ctx, b, res, existing)
            delay = self._provisioning_seconds(t)
            style = behavior.put_style
            if style == LOCATION and existing is not None:
                style = SYNC  # an update of a storage account answers at once
            if style == SYNC:
                res.state = "Succeeded"
            else:
                res.state = behavior.pending_state if existing is None else "Updating"
            if existing is not None:
                res.visible_at = existing.visible_at
            elif style != SYNC:
                # Eventual visibility: a create ARM accepted may read as absent for a while (and its
                # operation is not done before it shows); a type without a provisioning state only
                # appears once it is created.
                lag = self.ctx.faults.late_visibility()
                delay = max(delay, lag)
                res.visible_at = float("inf") if not behavior.declares_state else time.time() + lag
            self._store_with_hooks(res, existing)
        if t == SITE_TYPE and existing is not None:
            notify_site_listener(self.ctx, "on_settings_changed", res.rid.key)
        status = behavior.create_status if existing is None else behavior.update_status
        if style == SYNC:
            if delay > 0:
                await asyncio.sleep(delay)
            return self._resource_response(res, status)
        op = b.start_operation("put", res, delay)
        headers = self._op_headers(request, op, style)
        if style == STATE:
            return self._resource_response(res, status, headers)
        if style in (LOCATION, ASYNC_OP_AND_LOCATION):
            return _empty(202, headers)
        return self._resource_response(res, status, headers)

    def _provisioning_seconds(self, type_key: str) -> float:
        """The profile's time for a type; a nested type without its own figure (e.g.
        `systemtopics/eventsubscriptions`) takes its namespace's `<ns>/<leaf>` figure."""
        seconds = self.ctx.faults.provisioning_seconds(type_key)
        parts = type_key.split("/")
        if not seconds and len(parts) > 2:
            seconds = self.ctx.faults.provisioning_seconds(f"{parts[0]}/{parts[-1]}")
        return seconds

    def _op_url(self, request: web.Request, op: Operation, kind: str) -> str:
        api = quote(request.query.get("api-version", ""), safe="")
        return (
            f"{self.ctx.azure_base_url}/subscriptions/{self.ctx.subscription_id}/providers/{op.namespace}"
            f"/locations/{op.location}/{kind}/{op.op_id}?api-version={api}"
        )

    def _op_headers(self, request: web.Request, op: Operation, style: str) -> dict[str, str]:
        headers = {"Retry-After": str(self.ctx.faults.profile.retry_after_seconds)}
        if style in (ASYNC_OP, ASYNC_OP_AND_LOCATION):
            headers["Azure-AsyncOperation"] = self._op_url(request, op, "operationStatuses")
        if style in (LOCATION, ASYNC_OP_AND_LOCATION):
            headers["Location"] = self._op_url(request, op, "operationResults")
        return headers

    # --- PATCH ------------------------------------------------------------------------------

    async def _patch(self, request: web.Request, rid: ResourceId) -> web.StreamResponse:
        b = self.backend
        body = await self._read_json(request)
        b.check_parents(rid)
        if rid.type_key == ROLE_ASSIGNMENT_TYPE:
            raise ArmError(
                405, "MethodNotAllowed", "Role assignments cannot be patched; delete and create again."
            )
        if rid.type_key == "microsoft.web/sites/config" and rid.name.lower() == "web":
            return self._put_site_config(rid, body, merge=True)
        with b.lock:
            existing = b.get(rid.key)
            if existing is None:
                raise b.not_found(rid)
            self._preconditions(request, existing)
            merged = deep_merge(existing.body, body)
            merged["id"], merged["name"], merged["type"] = (
                existing.rid.id,
                existing.rid.name,
                existing.rid.type,
            )
            if existing.rid.type_key == SITE_TYPE:
                self._check_flex_settings(existing.rid, merged)
            merged.get("properties", {}).pop("provisioningState", None)
            res = Resource(existing.rid, merged, b.next_etag(), secrets=existing.secrets,
                           visible_at=existing.visible_at)
            enrich.enrich(self.ctx, b, res, existing)
            self._store_with_hooks(res, existing)
        if res.rid.type_key == SITE_TYPE:
            notify_site_listener(self.ctx, "on_settings_changed", res.rid.key)
        return self._resource_response(res, 200)

    def _store_with_hooks(self, res: Resource, existing: Resource | None) -> None:
        """Store `res` and run its type's hook. A hook refuses a PUT by raising an exception with an
        int `status` and a str `code` (ARM answers that error; the store is left as it was)."""
        b = self.backend
        b.resources[res.rid.key] = res
        hooks = self.ctx.hooks_for(res.rid.type)
        try:
            if hooks is not None:
                hooks.on_put(res.rid.id, res.body)
        except Exception as exc:
            if existing is not None:
                b.resources[res.rid.key] = existing
            else:
                b.resources.pop(res.rid.key, None)
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            if isinstance(status, int) and 400 <= status < 600 and isinstance(code, str):
                message = getattr(exc, "message", None) or str(exc)
                raise ArmError(status, code, str(message)) from None
            raise
        if res.state == "Succeeded":
            b.resource_written(res.rid)  # long operations raise it when they finish

    # --- DELETE -----------------------------------------------------------------------------

    def _delete(self, request: web.Request, rid: ResourceId) -> web.StreamResponse:
        b = self.backend
        if rid.is_subscription:
            raise ArmError(405, "MethodNotAllowed", "Subscriptions cannot be deleted through this API.")
        with b.lock:
            existing = b.get(rid.key)
            if existing is None:
                if rid.is_resource_group:
                    raise ArmError(
                        404, "ResourceGroupNotFound", f"Resource group '{rid.name}' could not be found."
                    )
                b.check_parents(rid)
                return _empty(204)
            self._preconditions(request, existing)
            if rid.type_key == ROLE_ASSIGNMENT_TYPE:
                body = existing.body
                b.delete_now(rid.key)
                return json_response(body, 200)
            behavior = b.behavior(rid.type_key)
            running = b.pending_operation(rid.key)
            if running is not None and running.kind == "delete":
                return _empty(202, self._op_headers(request, running, behavior.delete_style))
            if behavior.delete_style == SYNC:
                b.delete_now(rid.key)
                return _empty(200)
            existing.state = "Deleting"
            if running is not None:
                running.status = "Canceled"
                running.finished_at = time.time()
            op = b.start_operation("delete", existing, self._provisioning_seconds(rid.type_key))
            headers = self._op_headers(request, op, behavior.delete_style)
            if behavior.delete_answers_body:
                return self._resource_response(existing, 202, headers)
            return _empty(202, headers)

    # --- operation polls --------------------------------------------------------------------

    def _poll(self, request: web.Request, kind: str, op_id: str) -> web.StreamResponse:
        b = self.backend
        with b.lock:
            op = b.operations.get(op_id)
            if op is None:
                raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
            op.polled += 1
            retry = {"Retry-After": str(self.ctx.faults.profile.retry_after_seconds)}
            if kind == "operationstatuses":
                body: dict[str, Any] = {
                    "id": request.path,
                    "name": op.op_id,
                    "status": op.status,
                    "startTime": _now_iso(op.started_at),
                }
                if op.finished_at is not None:
                    body["endTime"] = _now_iso(op.finished_at)
                if op.status == "Failed":
                    body["error"] = self._op_error(op)
                return json_response(body, 200, retry if op.status == "InProgress" else None)
            # operationResults (the Location header)
            if op.status == "InProgress":
                return _empty(202, {**retry, "Location": str(request.url)})
            if op.status == "Failed":
                return json_response({"error": self._op_error(op)}, 400)
            if op.status == "Canceled":
                return json_response(
                    {
                        "error": {
                            "code": "OperationCanceled",
                            "message": f"The operation on '{op.resource_id}' was canceled.",
                        }
                    },
                    409,
                )
            if op.kind == "delete":
                return _empty(204)
            res = b.get(op.resource_key)
            if res is None:
                return _empty(204)
            return self._resource_response(res, 200)

    def _op_error(self, op: Operation) -> dict[str, Any]:
        verb = "Creating or updating" if op.kind == "put" else "Deleting"
        return {
            "code": "ProvisioningFailed",
            "message": f"{verb} '{op.resource_id}' failed: a transient platform error (injected once by the "
            "sandbox's fault profile). Retrying the operation succeeds.",
        }

    # --- POST actions -----------------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        head, _, action = path.rpartition("/")
        action_l = action.lower()
        segs = [s for s in head.split("/") if s]
        # POST /subscriptions/{sub}/providers/{ns}/register (provider registration)
        if action_l == "register" and len(segs) == 4 and segs[2].lower() == "providers":
            self._check_subscription(segs[1])
            return json_response(self._provider_body(segs[1], segs[3]))
        rid = parse(head)
        if not isinstance(rid, ResourceId):
            raise ArmError(404, "NotFound", f"No action '{action}' on a collection: {request.path}")
        t = rid.type_key
        b = self.backend
        b.check_parents(rid)
        if t == "microsoft.web/sites/config" and action_l == "list":
            site = self._site(rid)
            if rid.name.lower() == "appsettings":
                return json_response(enrich.app_settings_body(site, b.site_state(site.rid.key)))
            if rid.name.lower() == "publishingcredentials":
                return json_response(
                    enrich.publishing_credentials_body(self.ctx, site, b.site_state(site.rid.key))
                )
        if t == "microsoft.web/sites/host" and action_l == "listkeys":
            site = self._site(rid)
            return json_response(enrich.host_keys_body(self.ctx, site, b.site_state(site.rid.key)))
        if t == "microsoft.web/sites/functions" and action_l == "listkeys":
            site = self._site(rid)
            state = b.site_state(site.rid.key)
            if not any(f.name.lower() == rid.name.lower() for f in state.indexed_functions):
                raise ArmError(404, "NotFound", f"Function {rid.name} not found on site {site.rid.name}.")
            return json_response(enrich.function_keys_body(site, state, rid.name))
        res = b.read(rid.key)
        if res is None and (b.get(rid.key) is not None or not b.exists(rid)):
            raise b.not_found(rid)
        if t == SITE_TYPE and res is not None:
            if action_l == "syncfunctiontriggers":
                enrich.sync_triggers(b.site_state(res.rid.key))
                return _empty(204)
            if action_l in ("restart", "start", "stop"):
                res.body["properties"]["state"] = "Stopped" if action_l == "stop" else "Running"
                return _empty(200)
        if (
            t == "microsoft.eventgrid/topics"
            and res is not None
            and action_l in ("listkeys", "regeneratekey")
        ):
            return await self._topic_keys(request, res, action_l)
        if action_l == "listkeys" and res is not None:
            keys = enrich.list_keys_body(res)
            if keys is not None:
                return json_response(keys)
        if t == "microsoft.devices/iothubs/iothubkeys" and action_l == "listkeys":
            hub = b.get(rid.parent or "")
            assert hub is not None
            rule = enrich.iothub_key(hub, rid.name)
            if rule is None:
                raise ArmError(
                    404,
                    "KeyNameNotFound",
                    f"The key name '{rid.name}' was not found on IoT hub '{hub.rid.name}'.",
                )
            return json_response(rule)
        raise ArmError(
            404,
            "NotFound",
            f"The action '{action}' is not supported on resources of type '{rid.type}' in the sandbox.",
        )

    async def _topic_keys(self, request: web.Request, res: Resource, action: str) -> web.Response:
        """Topic keys come from the Event Grid data plane when it is mounted (it checks them on
        publish); otherwise from ARM's own record."""
        owner = getattr(self.ctx.hooks_for(res.rid.type), "owner", None)
        if action == "regeneratekey":
            body = await self._read_json(request)
            key_name = str(body.get("keyName", ""))
            if key_name.lower() not in ("key1", "key2"):
                raise ArmError(400, "InvalidRequest", f"keyName: must be key1 or key2, got {key_name!r}.")
            regenerate = getattr(owner, "regenerate_key", None)
            if callable(regenerate):
                return json_response(regenerate(res.rid.id, key_name))
            res.secrets[key_name.lower()] = enrich.new_key()
            return json_response({"key1": res.secrets["key1"], "key2": res.secrets["key2"]})
        keys = getattr(owner, "keys", None)
        if callable(keys):
            return json_response(keys(res.rid.id))
        return json_response({"key1": res.secrets["key1"], "key2": res.secrets["key2"]})

    # --- Web apps: settings and policies ----------------------------------------------------

    def _site_resource(self, rid: ResourceId) -> Resource:
        res = self.backend.read(rid.key)
        if res is None or res.rid.type_key != SITE_TYPE:
            raise self.backend.not_found(rid)
        return res

    def _site(self, child: ResourceId) -> Resource:
        parent = parse(child.parent or "")
        if not isinstance(parent, ResourceId):
            raise ArmError(400, "InvalidRequestUri", f"{child.id} is not under a site")
        return self._site_resource(parent)

    def _check_flex_settings(self, rid: ResourceId, body: dict[str, Any]) -> None:
        props = body.get("properties") or {}
        site_config = props.get("siteConfig") or {}
        settings = site_config.get("appSettings") or []
        names = {str(s.get("name", "")).upper() for s in settings if isinstance(s, dict)}
        flex = bool(props.get("functionAppConfig"))
        if not flex:
            farm_id = props.get("serverFarmId")
            farm = self.backend.get(farm_id) if isinstance(farm_id, str) else None
            flex = farm is not None and str((farm.body.get("sku") or {}).get("name", "")).upper() == "FC1"
        bad = sorted(names & set(FLEX_REJECTED_SETTINGS))
        if flex and bad:
            raise ArmError(
                400,
                "BadRequest",
                f"The following app setting(s) are not supported on the Flex Consumption plan: {', '.join(bad)}.",
            )

    def _put_app_settings(self, rid: ResourceId, body: dict[str, Any]) -> web.Response:
        b = self.backend
        site = self._site(rid)
        props = body.get("properties")
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise ArmError(
                400, "BadRequest", "properties: must be an object of setting names to string values."
            )
        if b.is_flex_site(site):
            bad = sorted({k.upper() for k in props} & set(FLEX_REJECTED_SETTINGS))
            if bad:
                raise ArmError(
                    400,
                    "BadRequest",
                    f"The following app setting(s) are not supported on the Flex Consumption plan: {', '.join(bad)}.",
                )
        state = b.site_state(site.rid.key)
        state.app_settings = dict(props)  # replace, not merge: callers read, merge and write
        notify_site_listener(self.ctx, "on_settings_changed", site.rid.key)
        self.backend.resource_written(rid)
        return json_response(enrich.app_settings_body(site, state))

    def _put_site_config(self, rid: ResourceId, body: dict[str, Any], merge: bool) -> web.Response:
        """`config/web`: the site's siteConfig. App settings are not part of it (appsettings is)."""
        site = self._site(rid)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "BadRequest", "properties: the site configuration object is required.")
        props = {k: v for k, v in props.items() if k != "appSettings"}
        with self.backend.lock:
            site_props = site.body.setdefault("properties", {})
            current = site_props.get("siteConfig") if merge else None
            site_config = deep_merge(current, props) if isinstance(current, dict) else props
            site_config["appSettings"] = None
            site_props["siteConfig"] = site_config
            site.etag = self.backend.next_etag()
        self.backend.resource_written(rid)
        return json_response(enrich.site_config_body(site))

    def _put_scm_policy(self, rid: ResourceId, body: dict[str, Any]) -> web.Response:
        b = self.backend
        site = self._site(rid)
        if rid.name.lower() not in ("scm", "ftp"):
            raise ArmError(404, "NotFound", f"Unknown publishing credentials policy '{rid.name}'.")
        allow = (body.get("properties") or {}).get("allow")
        if not isinstance(allow, bool):
            raise ArmError(400, "BadRequest", "properties.allow: a boolean is required.")
        state = b.site_state(site.rid.key)
        if rid.name.lower() == "scm":
            state.scm_basic_auth = allow
        else:
            state.ftp_basic_auth = allow
        self.backend.resource_written(rid)
        return json_response(enrich.scm_policy_body(rid, state))
