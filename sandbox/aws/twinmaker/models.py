"""State of the AWS IoT TwinMaker stand-in: workspaces, component types, entities, scenes, tags.

Behaviour follows the TwinMaker API reference where our deployer depends on it:
- a component type is CREATING (UPDATING after an update) until the profile's provisioning
  time for `aws/iottwinmaker/componenttype` has passed, then ACTIVE; when the profile fails the
  operation once it ends in ERROR instead, and an update (the retry) provisions it; entities
  may only use an ACTIVE, non-abstract component type;
- every workspace holds the built-in `com.amazon.*` component types, which cannot be changed
  or deleted and do not count as content;
- entities form a tree: an entity without a parent reports `parentEntityId: "$ROOT"`; deleting
  an entity with children needs `isRecursive=true`;
- a workspace that still holds entities, scenes or its own component types cannot be deleted,
  and a component type that entities use (or other types extend) cannot be deleted:
  `ValidationException` (the only client error TwinMaker lists for those deletes);
- component types' functions (e.g. the `dataReader` Lambda) are stored, never called.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.aws.backends import ArnTagging, RegionalBackends
from sandbox.aws.protocol import ACCOUNT_ID
from sandbox.aws.routing import ConflictException, ResourceNotFoundException, ValidationException
from sandbox.core.profiles import Faults

ROOT = "$ROOT"
COMPONENT_TYPE_KIND = "aws/iottwinmaker/componenttype"
ENTITY_KIND = "aws/iottwinmaker/entity"

_WORKSPACE_ID_RE = re.compile(r"[a-zA-Z_0-9][a-zA-Z_\-0-9]*[a-zA-Z0-9]+")
_COMPONENT_TYPE_ID_RE = re.compile(r"[a-zA-Z_.\-0-9:]+")
_ENTITY_ID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-zA-Z0-9][a-zA-Z_\-0-9.:]*[a-zA-Z0-9]+"
)
_ENTITY_NAME_RE = re.compile(r"[a-zA-Z_0-9\-.][a-zA-Z_0-9\-. ]*[a-zA-Z0-9]+")
_DATA_TYPES = {"RELATIONSHIP", "STRING", "LONG", "BOOLEAN", "INTEGER", "DOUBLE", "LIST", "MAP"}


# Every workspace comes with these (AWS IoT TwinMaker guide, "Built-in component types"). They
# cannot be changed or deleted and do not keep a workspace from being deleted. Only the abstract
# alarm's definitions are documented (its example in the guide); the others carry none here.
BUILT_IN_COMPONENT_TYPES: dict[str, dict[str, Any]] = {
    "com.amazon.iotsitewise.resourcesync": {"description": "Syncs AWS IoT SiteWise assets into entities"},
    "com.amazon.iottwinmaker.alarm.basic": {
        "description": "Abstract alarm component type",
        "isAbstract": True,
        "functions": {"dataReader": {}},
        "propertyDefinitions": {
            "alarm_key": {"dataType": {"type": "STRING"}, "isExternalId": True, "isRequiredInEntity": True},
            "alarm_status": {"dataType": {"type": "STRING"}, "isStoredExternally": True, "isTimeSeries": True},
        },
    },
    "com.amazon.iottwinmaker.documents": {"description": "Titles and URLs of documents about an entity"},
    "com.amazon.iotsitewise.connector.edgevideo": {"description": "Video from an edge device"},
    "com.amazon.iotsitewise.connector": {"description": "Pulls AWS IoT SiteWise data into an entity"},
    "com.amazon.iottwinmaker.parameters": {"description": "Static key-value pairs on an entity"},
    "com.amazon.kvs.video": {"description": "Video from Kinesis Video Streams"},
}
_SCENE_ID_RE = re.compile(r"[a-zA-Z_0-9][a-zA-Z_\-0-9]*[a-zA-Z0-9]+")


def _check(pattern: re.Pattern[str], value: Any, name: str, max_len: int) -> str:
    if not isinstance(value, str) or not (1 <= len(value) <= max_len) or not pattern.fullmatch(value):
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )
    return value


@dataclass
class ComponentType:
    component_type_id: str
    arn: str
    description: str
    property_definitions: dict[str, dict[str, Any]]
    extends_from: list[str]
    functions: dict[str, dict[str, Any]]
    is_singleton: bool
    is_abstract: bool
    property_groups: dict[str, Any]
    component_type_name: str | None
    composite_component_types: dict[str, Any]
    tags: dict[str, str]
    created: float
    updated: float
    # The time from which the type is ACTIVE; before it, CREATING (or UPDATING after an update).
    ready_at: float
    pending_state: str = "CREATING"
    built_in: bool = False
    # The profile made this provisioning fail (fail-once LRO): ERROR instead of ACTIVE; an
    # update (the retry) clears it.
    failed: bool = False

    def state(self, now: float) -> str:
        if now < self.ready_at:
            return self.pending_state
        return "ERROR" if self.failed else "ACTIVE"

    def status(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        if state == "ERROR":
            return {
                "state": state,
                "error": {"code": "INTERNAL_FAILURE", "message": "Component type provisioning failed; update it to retry"},
            }
        return {"state": state}


@dataclass
class Scene:
    scene_id: str
    arn: str
    content_location: str
    description: str
    capabilities: list[str]
    scene_metadata: dict[str, str]
    tags: dict[str, str]
    created: float
    updated: float


@dataclass
class Component:
    component_type_id: str
    description: str
    # name -> {"definition": PropertyDefinitionRequest (optional), "value": DataValue (optional)}
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    property_groups: dict[str, Any] = field(default_factory=dict)


@dataclass
class Entity:
    entity_id: str
    arn: str
    name: str
    description: str
    parent_id: str | None
    components: dict[str, Component]
    tags: dict[str, str]
    created: float
    updated: float
    ready_at: float
    pending_state: str = "CREATING"

    def state(self, now: float) -> str:
        return "ACTIVE" if now >= self.ready_at else self.pending_state


@dataclass
class Workspace:
    workspace_id: str
    arn: str
    description: str
    s3_location: str | None
    role: str | None
    tags: dict[str, str]
    created: float
    updated: float
    component_types: dict[str, ComponentType] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    scenes: dict[str, Scene] = field(default_factory=dict)

    def user_component_types(self) -> list[ComponentType]:
        return [ct for ct in self.component_types.values() if not ct.built_in]


def _page(items: list[dict[str, Any]], body: dict[str, Any], key: str) -> dict[str, Any]:
    """TwinMaker's nextToken/maxResults paging over an already ordered list."""
    max_results = body.get("maxResults") or 100
    if not isinstance(max_results, int) or not 1 <= max_results <= 200:
        raise ValidationException("maxResults must be an integer between 1 and 200")
    token = body.get("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ValidationException(f"invalid nextToken {token!r}") from None
    out: dict[str, Any] = {key: items[start : start + max_results]}
    if start + max_results < len(items):
        out["nextToken"] = str(start + max_results)
    return out


class TwinMakerBackend(ArnTagging):
    """One region's TwinMaker state. Thread-safe: the proxy's loop writes while the control
    endpoint lists or resets from another thread."""

    def __init__(self, region: str, faults: Faults, account_id: str = ACCOUNT_ID) -> None:
        self.region = region
        self.account_id = account_id
        self._faults = faults
        self._lock = threading.RLock()
        self.workspaces: dict[str, Workspace] = {}

    # --- workspaces ------------------------------------------------------------------------

    def _arn(self, suffix: str) -> str:
        return f"arn:aws:iottwinmaker:{self.region}:{self.account_id}:{suffix}"

    def _workspace(self, workspace_id: str, missing: type[Exception] = ResourceNotFoundException) -> Workspace:
        ws = self.workspaces.get(workspace_id)
        if ws is None:
            raise missing(f"Workspace {workspace_id} not found")
        return ws

    def create_workspace(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        _check(_WORKSPACE_ID_RE, workspace_id, "workspaceId", 128)
        with self._lock:
            if workspace_id in self.workspaces:
                raise ConflictException(f"Workspace {workspace_id} already exists")
            now = time.time()
            ws = Workspace(
                workspace_id=workspace_id,
                arn=self._arn(f"workspace/{workspace_id}"),
                description=body.get("description", ""),
                s3_location=body.get("s3Location"),
                role=body.get("role"),
                tags=dict(body.get("tags") or {}),
                created=now,
                updated=now,
            )
            for ct_id, spec in BUILT_IN_COMPONENT_TYPES.items():
                ws.component_types[ct_id] = ComponentType(
                    component_type_id=ct_id,
                    arn=self._arn(f"workspace/{workspace_id}/component-type/{ct_id}"),
                    description=spec["description"],
                    property_definitions=copy.deepcopy(spec.get("propertyDefinitions", {})),
                    extends_from=[],
                    functions=copy.deepcopy(spec.get("functions", {})),
                    is_singleton=False,
                    is_abstract=bool(spec.get("isAbstract", False)),
                    property_groups={},
                    component_type_name=None,
                    composite_component_types={},
                    tags={},
                    created=now,
                    updated=now,
                    ready_at=now,
                    built_in=True,
                )
            self.workspaces[workspace_id] = ws
            return {"arn": ws.arn, "creationDateTime": now}

    def _workspace_view(self, ws: Workspace, summary: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workspaceId": ws.workspace_id,
            "arn": ws.arn,
            "description": ws.description,
            "linkedServices": [],
            "creationDateTime": ws.created,
            "updateDateTime": ws.updated,
        }
        if not summary:
            if ws.s3_location:
                out["s3Location"] = ws.s3_location
            if ws.role:
                out["role"] = ws.role
        return out

    def get_workspace(self, workspace_id: str) -> dict[str, Any]:
        with self._lock:
            return self._workspace_view(self._workspace(workspace_id))

    def list_workspaces(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            items = [self._workspace_view(w, summary=True) for w in sorted(self.workspaces.values(), key=_by_created)]
        return _page(items, body, "workspaceSummaries")

    def update_workspace(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            if "description" in body:
                ws.description = body["description"]
            if "role" in body:
                ws.role = body["role"]
            if "s3Location" in body:
                ws.s3_location = body["s3Location"]
            ws.updated = time.time()
            return {"updateDateTime": ws.updated}

    def delete_workspace(self, workspace_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            user_types = ws.user_component_types()
            if ws.entities or user_types or ws.scenes:
                raise ValidationException(
                    f"Workspace {workspace_id} is not empty: it still has {len(ws.entities)} entities, "
                    f"{len(user_types)} component types and {len(ws.scenes)} scenes; delete them first"
                )
            del self.workspaces[workspace_id]
            return {"message": f"Workspace {workspace_id} deleted"}

    # --- component types -------------------------------------------------------------------

    def create_component_type(self, workspace_id: str, component_type_id: str, body: dict[str, Any]) -> dict[str, Any]:
        _check(_COMPONENT_TYPE_ID_RE, component_type_id, "componentTypeId", 256)
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            if component_type_id in ws.component_types:
                raise ConflictException(f"Component type {component_type_id} already exists in workspace {workspace_id}")
            if component_type_id.startswith("com.amazon"):
                raise ValidationException("componentTypeId: the com.amazon namespace is reserved for built-in types")
            extends_from = list(body.get("extendsFrom") or [])
            for parent in extends_from:
                if parent not in ws.component_types:
                    raise ValidationException(f"extendsFrom: component type {parent} does not exist in {workspace_id}")
            definitions = dict(body.get("propertyDefinitions") or {})
            inherited = self._inherited_definitions(ws, extends_from)
            for name, definition in definitions.items():
                _validate_definition(name, definition, inherited_from_parent=name in inherited)
            now = time.time()
            ct = ComponentType(
                component_type_id=component_type_id,
                arn=self._arn(f"workspace/{workspace_id}/component-type/{component_type_id}"),
                description=body.get("description", ""),
                property_definitions=copy.deepcopy(definitions),
                extends_from=extends_from,
                functions=copy.deepcopy(dict(body.get("functions") or {})),
                is_singleton=bool(body.get("isSingleton", False)),
                is_abstract=bool(body.get("isAbstract", False)),
                property_groups=copy.deepcopy(dict(body.get("propertyGroups") or {})),
                component_type_name=body.get("componentTypeName"),
                composite_component_types=copy.deepcopy(dict(body.get("compositeComponentTypes") or {})),
                tags=dict(body.get("tags") or {}),
                created=now,
                updated=now,
                ready_at=now + self._faults.provisioning_seconds(COMPONENT_TYPE_KIND),
                failed=self._faults.fail_once(f"{COMPONENT_TYPE_KIND}/{self.region}/{workspace_id}/{component_type_id}"),
            )
            ws.component_types[component_type_id] = ct
            # AWS answers CREATING even when the type becomes ACTIVE a moment later.
            return {"arn": ct.arn, "creationDateTime": now, "state": "CREATING"}

    def _component_type(self, ws: Workspace, component_type_id: str) -> ComponentType:
        ct = ws.component_types.get(component_type_id)
        if ct is None:
            raise ResourceNotFoundException(
                f"Component type {component_type_id} not found in workspace {ws.workspace_id}"
            )
        return ct

    def _inherited_definitions(self, ws: Workspace, parents: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for parent_id in parents:
            parent = ws.component_types.get(parent_id)
            if parent is not None:
                out.update(self._effective_definitions(ws, parent))
        return out

    def _effective_definitions(self, ws: Workspace, ct: ComponentType) -> dict[str, dict[str, Any]]:
        """Own property definitions over inherited ones (own fields win; `isInherited` marks
        definitions that come only from a parent)."""
        out = {name: {**d, "_inherited": True} for name, d in self._inherited_definitions(ws, ct.extends_from).items()}
        for name, d in ct.property_definitions.items():
            base = {k: v for k, v in out.get(name, {}).items() if k != "_inherited"}
            out[name] = {**base, **d}
        return out

    def _effective_functions(self, ws: Workspace, ct: ComponentType) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for parent_id in ct.extends_from:
            parent = ws.component_types.get(parent_id)
            if parent is not None:
                out.update({n: {**f, "isInherited": True} for n, f in self._effective_functions(ws, parent).items()})
        for name, f in ct.functions.items():
            out[name] = {**copy.deepcopy(f), "isInherited": False}
        return out

    def get_component_type(self, workspace_id: str, component_type_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            ct = self._component_type(ws, component_type_id)
            out: dict[str, Any] = {
                "workspaceId": workspace_id,
                "componentTypeId": ct.component_type_id,
                "arn": ct.arn,
                "description": ct.description,
                "isSingleton": ct.is_singleton,
                "isAbstract": ct.is_abstract,
                "isSchemaInitialized": False,
                "extendsFrom": list(ct.extends_from),
                "propertyDefinitions": {
                    name: _definition_response(d) for name, d in self._effective_definitions(ws, ct).items()
                },
                "functions": self._effective_functions(ws, ct),
                "propertyGroups": copy.deepcopy(ct.property_groups),
                "compositeComponentTypes": copy.deepcopy(ct.composite_component_types),
                "creationDateTime": ct.created,
                "updateDateTime": ct.updated,
                "status": ct.status(time.time()),
            }
            if ct.component_type_name:
                out["componentTypeName"] = ct.component_type_name
            return out

    def list_component_types(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        filters = body.get("filters") or []
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            now = time.time()
            items = []
            for ct in sorted(ws.component_types.values(), key=_by_created):
                if not all(_component_type_matches(ct, f) for f in filters):
                    continue
                summary: dict[str, Any] = {
                    "arn": ct.arn,
                    "componentTypeId": ct.component_type_id,
                    "creationDateTime": ct.created,
                    "updateDateTime": ct.updated,
                    "description": ct.description,
                    "status": ct.status(now),
                }
                if ct.component_type_name:
                    summary["componentTypeName"] = ct.component_type_name
                items.append(summary)
        out = _page(items, body, "componentTypeSummaries")
        out["workspaceId"] = workspace_id
        return out

    def update_component_type(self, workspace_id: str, component_type_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            ct = self._component_type(ws, component_type_id)
            if ct.built_in:
                raise ValidationException(f"Component type {component_type_id} is built in and cannot be changed")
            if "extendsFrom" in body:
                for parent in body["extendsFrom"] or []:
                    if parent not in ws.component_types or parent == component_type_id:
                        raise ValidationException(f"extendsFrom: component type {parent} cannot be extended here")
                ct.extends_from = list(body["extendsFrom"] or [])
            if "propertyDefinitions" in body:
                inherited = self._inherited_definitions(ws, ct.extends_from)
                for name, definition in (body["propertyDefinitions"] or {}).items():
                    _validate_definition(name, definition, inherited_from_parent=name in inherited)
                ct.property_definitions = copy.deepcopy(dict(body["propertyDefinitions"] or {}))
            for key, attr in (
                ("functions", "functions"),
                ("propertyGroups", "property_groups"),
                ("compositeComponentTypes", "composite_component_types"),
            ):
                if key in body:
                    setattr(ct, attr, copy.deepcopy(dict(body[key] or {})))
            if "description" in body:
                ct.description = body["description"]
            if "isSingleton" in body:
                ct.is_singleton = bool(body["isSingleton"])
            if "componentTypeName" in body:
                ct.component_type_name = body["componentTypeName"]
            now = time.time()
            ct.updated = now
            ct.pending_state = "UPDATING"
            ct.failed = False
            ct.ready_at = now + self._faults.provisioning_seconds(COMPONENT_TYPE_KIND)
            return {"workspaceId": workspace_id, "arn": ct.arn, "componentTypeId": component_type_id, "state": "UPDATING"}

    def delete_component_type(self, workspace_id: str, component_type_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            if self._component_type(ws, component_type_id).built_in:
                raise ValidationException(f"Component type {component_type_id} is built in and cannot be deleted")
            users = sorted(
                e.entity_id
                for e in ws.entities.values()
                if any(c.component_type_id == component_type_id for c in e.components.values())
            )
            if users:
                raise ValidationException(
                    f"Component type {component_type_id} is used by entities {', '.join(users[:5])}; "
                    "remove those components first"
                )
            children = sorted(c.component_type_id for c in ws.component_types.values() if component_type_id in c.extends_from)
            if children:
                raise ValidationException(
                    f"Component type {component_type_id} is extended by {', '.join(children[:5])}; delete those first"
                )
            del ws.component_types[component_type_id]
            return {"state": "DELETING"}

    # --- entities --------------------------------------------------------------------------

    def _entity(self, ws: Workspace, entity_id: str) -> Entity:
        entity = ws.entities.get(entity_id)
        if entity is None:
            raise ResourceNotFoundException(f"Entity {entity_id} not found in workspace {ws.workspace_id}")
        return entity

    def _parent(self, ws: Workspace, parent_id: Any) -> str | None:
        if parent_id in (None, "", ROOT):
            return None
        if parent_id not in ws.entities:
            raise ValidationException(f"Parent entity {parent_id} does not exist in workspace {ws.workspace_id}")
        return str(parent_id)

    def _usable_type(self, ws: Workspace, component_name: str, component_type_id: Any) -> ComponentType:
        if not isinstance(component_type_id, str):
            raise ValidationException(f"components.{component_name}.componentTypeId is required")
        ct = ws.component_types.get(component_type_id)
        if ct is None:
            raise ValidationException(
                f"components.{component_name}: component type {component_type_id} does not exist in {ws.workspace_id}"
            )
        state = ct.state(time.time())
        if state != "ACTIVE":
            raise ValidationException(
                f"components.{component_name}: component type {component_type_id} is {state}, not ACTIVE"
            )
        if ct.is_abstract:
            raise ValidationException(
                f"components.{component_name}: component type {component_type_id} is abstract and cannot be used"
            )
        return ct

    def _new_component(self, ws: Workspace, name: str, request: dict[str, Any]) -> Component:
        ct = self._usable_type(ws, name, request.get("componentTypeId"))
        defined = self._effective_definitions(ws, ct)
        properties: dict[str, dict[str, Any]] = {}
        for pname, prop in (request.get("properties") or {}).items():
            if pname not in defined and not prop.get("definition"):
                raise ValidationException(
                    f"components.{name}.properties.{pname}: not defined by {ct.component_type_id} and no definition given"
                )
            properties[pname] = {k: copy.deepcopy(v) for k, v in prop.items() if k in ("definition", "value")}
        return Component(
            component_type_id=ct.component_type_id,
            description=request.get("description", ""),
            properties=properties,
            property_groups=copy.deepcopy(dict(request.get("propertyGroups") or {})),
        )

    def create_entity(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        entity_id = body.get("entityId") or str(uuid.uuid4())
        _check(_ENTITY_ID_RE, entity_id, "entityId", 128)
        name = _check(_ENTITY_NAME_RE, body.get("entityName"), "entityName", 256)
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            if entity_id in ws.entities:
                raise ConflictException(f"Entity {entity_id} already exists in workspace {workspace_id}")
            parent = self._parent(ws, body.get("parentEntityId"))
            components = {cname: self._new_component(ws, cname, c) for cname, c in (body.get("components") or {}).items()}
            now = time.time()
            entity = Entity(
                entity_id=entity_id,
                arn=self._arn(f"workspace/{workspace_id}/entity/{entity_id}"),
                name=name,
                description=body.get("description", ""),
                parent_id=parent,
                components=components,
                tags=dict(body.get("tags") or {}),
                created=now,
                updated=now,
                ready_at=now + self._faults.provisioning_seconds(ENTITY_KIND),
            )
            ws.entities[entity_id] = entity
            return {"entityId": entity_id, "arn": entity.arn, "creationDateTime": now, "state": "CREATING"}

    def _has_children(self, ws: Workspace, entity_id: str) -> bool:
        return any(e.parent_id == entity_id for e in ws.entities.values())

    def get_entity(self, workspace_id: str, entity_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            entity = self._entity(ws, entity_id)
            now = time.time()
            components: dict[str, Any] = {}
            for cname, comp in entity.components.items():
                ct = ws.component_types.get(comp.component_type_id)
                defined = self._effective_definitions(ws, ct) if ct is not None else {}
                props: dict[str, Any] = {}
                for pname, d in defined.items():
                    props[pname] = {"definition": _definition_response(d)}
                    if "defaultValue" in d:
                        props[pname]["value"] = copy.deepcopy(d["defaultValue"])
                for pname, p in comp.properties.items():
                    entry = props.setdefault(pname, {})
                    if p.get("definition"):
                        entry["definition"] = _definition_response({**defined.get(pname, {}), **p["definition"]})
                    if "value" in p:
                        entry["value"] = copy.deepcopy(p["value"])
                components[cname] = {
                    "componentName": cname,
                    "componentTypeId": comp.component_type_id,
                    "description": comp.description,
                    "definedIn": comp.component_type_id,
                    "status": {"state": "ACTIVE"},
                    "properties": props,
                    "propertyGroups": copy.deepcopy(comp.property_groups),
                    "areAllPropertiesReturned": True,
                }
            return {
                "entityId": entity.entity_id,
                "entityName": entity.name,
                "arn": entity.arn,
                "status": {"state": entity.state(now)},
                "workspaceId": workspace_id,
                "description": entity.description,
                "components": components,
                "parentEntityId": entity.parent_id or ROOT,
                "hasChildEntities": self._has_children(ws, entity_id),
                "creationDateTime": entity.created,
                "updateDateTime": entity.updated,
                "areAllComponentsReturned": True,
            }

    def list_entities(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        filters = body.get("filters") or []
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            now = time.time()
            items = []
            for e in sorted(ws.entities.values(), key=_by_created):
                if not all(_entity_matches(e, f) for f in filters):
                    continue
                items.append(
                    {
                        "entityId": e.entity_id,
                        "entityName": e.name,
                        "arn": e.arn,
                        "parentEntityId": e.parent_id or ROOT,
                        "status": {"state": e.state(now)},
                        "description": e.description,
                        "hasChildEntities": self._has_children(ws, e.entity_id),
                        "creationDateTime": e.created,
                        "updateDateTime": e.updated,
                    }
                )
        return _page(items, body, "entitySummaries")

    def update_entity(self, workspace_id: str, entity_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            entity = self._entity(ws, entity_id)
            # Validate everything before changing anything: a rejected update changes nothing.
            components = copy.deepcopy(entity.components)
            for cname, update in (body.get("componentUpdates") or {}).items():
                kind = update.get("updateType", "UPDATE")
                if kind == "CREATE":
                    if cname in components:
                        raise ValidationException(f"componentUpdates.{cname}: component already exists")
                    components[cname] = self._new_component(
                        ws, cname, {**update, "properties": _property_requests(update.get("propertyUpdates"))}
                    )
                elif kind == "DELETE":
                    if cname not in components:
                        raise ValidationException(f"componentUpdates.{cname}: no such component")
                    del components[cname]
                elif kind in ("UPDATE", "RESET"):
                    if cname not in components:
                        raise ValidationException(f"componentUpdates.{cname}: no such component")
                    _apply_component_update(components[cname], update, reset=kind == "RESET")
                else:
                    raise ValidationException(f"componentUpdates.{cname}.updateType: unknown value {kind!r}")
            parent = entity.parent_id
            parent_update = body.get("parentEntityUpdate")
            if parent_update:
                kind = parent_update.get("updateType")
                if kind == "DELETE":
                    parent = None
                elif kind == "UPDATE":
                    parent = self._parent(ws, parent_update.get("parentEntityId"))
                    if parent is not None and self._is_descendant_or_self(ws, parent, entity_id):
                        raise ValidationException(
                            f"parentEntityUpdate: {parent} is {entity_id} or one of its descendants"
                        )
                else:
                    raise ValidationException(f"parentEntityUpdate.updateType: unknown value {kind!r}")
            name = entity.name
            if "entityName" in body:
                name = _check(_ENTITY_NAME_RE, body["entityName"], "entityName", 256)
            entity.components = components
            entity.parent_id = parent
            entity.name = name
            if "description" in body:
                entity.description = body["description"]
            now = time.time()
            entity.updated = now
            entity.pending_state = "UPDATING"
            entity.ready_at = now + self._faults.provisioning_seconds(ENTITY_KIND)
            return {"updateDateTime": now, "state": "UPDATING"}

    def _is_descendant_or_self(self, ws: Workspace, candidate: str, ancestor: str) -> bool:
        node: str | None = candidate
        while node is not None:
            if node == ancestor:
                return True
            node = ws.entities[node].parent_id if node in ws.entities else None
        return False

    def delete_entity(self, workspace_id: str, entity_id: str, recursive: bool) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            self._entity(ws, entity_id)
            doomed = [e for e in ws.entities if self._is_descendant_or_self(ws, e, entity_id)]
            if len(doomed) > 1 and not recursive:
                raise ValidationException(
                    f"Entity {entity_id} has child entities; delete them first or set isRecursive=true"
                )
            for e in doomed:
                del ws.entities[e]
            return {"state": "DELETING"}

    # --- scenes ----------------------------------------------------------------------------

    def create_scene(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        scene_id = _check(_SCENE_ID_RE, body.get("sceneId"), "sceneId", 128)
        location = body.get("contentLocation")
        if not isinstance(location, str) or not location.startswith("s3://"):
            raise ValidationException("contentLocation must be an s3:// URI of the scene file")
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            if scene_id in ws.scenes:
                raise ConflictException(f"Scene {scene_id} already exists in workspace {workspace_id}")
            now = time.time()
            scene = Scene(
                scene_id=scene_id,
                arn=self._arn(f"workspace/{workspace_id}/scene/{scene_id}"),
                content_location=location,
                description=body.get("description", ""),
                capabilities=list(body.get("capabilities") or []),
                scene_metadata=dict(body.get("sceneMetadata") or {}),
                tags=dict(body.get("tags") or {}),
                created=now,
                updated=now,
            )
            ws.scenes[scene_id] = scene
            return {"arn": scene.arn, "creationDateTime": now}

    def _scene(self, ws: Workspace, scene_id: str) -> Scene:
        scene = ws.scenes.get(scene_id)
        if scene is None:
            raise ResourceNotFoundException(f"Scene {scene_id} not found in workspace {ws.workspace_id}")
        return scene

    def _scene_view(self, workspace_id: str, sc: Scene) -> dict[str, Any]:
        return {
            "workspaceId": workspace_id,
            "sceneId": sc.scene_id,
            "contentLocation": sc.content_location,
            "arn": sc.arn,
            "creationDateTime": sc.created,
            "updateDateTime": sc.updated,
            "description": sc.description,
            "capabilities": list(sc.capabilities),
            "sceneMetadata": dict(sc.scene_metadata),
        }

    def get_scene(self, workspace_id: str, scene_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            return self._scene_view(workspace_id, self._scene(ws, scene_id))

    def list_scenes(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id, missing=ValidationException)
            items = []
            for sc in sorted(ws.scenes.values(), key=_by_created):
                view = self._scene_view(workspace_id, sc)
                items.append({k: view[k] for k in ("sceneId", "contentLocation", "arn", "creationDateTime", "updateDateTime", "description")})
        return _page(items, body, "sceneSummaries")

    def delete_scene(self, workspace_id: str, scene_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            self._scene(ws, scene_id)
            del ws.scenes[scene_id]
            return {}

    # --- tags --------------------------------------------------------------------------------

    def _tagged(self, arn: Any) -> Any:
        """The workspace, component type, entity or scene named by `arn`."""
        if isinstance(arn, str):
            for ws in self.workspaces.values():
                if ws.arn == arn:
                    return ws
                for coll in (ws.component_types, ws.entities, ws.scenes):
                    for item in coll.values():
                        if getattr(item, "arn", None) == arn:
                            return item
        raise ResourceNotFoundException(f"Resource {arn} not found")

    # --- sandbox helpers -------------------------------------------------------------------

    def resources(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        with self._lock:
            for ws in self.workspaces.values():
                out.append({"cloud": "aws", "type": "iottwinmaker:workspace", "id": ws.arn})
                out.extend(
                    {"cloud": "aws", "type": "iottwinmaker:component-type", "id": ct.arn}
                    for ct in ws.user_component_types()
                )
                out.extend({"cloud": "aws", "type": "iottwinmaker:scene", "id": sc.arn} for sc in ws.scenes.values())
                out.extend({"cloud": "aws", "type": "iottwinmaker:entity", "id": e.arn} for e in ws.entities.values())
        return out


def _by_created(x: Any) -> float:
    return float(x.created)


def _validate_definition(name: str, definition: Any, inherited_from_parent: bool) -> None:
    if not isinstance(definition, dict):
        raise ValidationException(f"propertyDefinitions.{name} must be an object")
    data_type = definition.get("dataType")
    if data_type is None:
        if not inherited_from_parent:
            raise ValidationException(f"propertyDefinitions.{name}.dataType is required")
        return
    if not isinstance(data_type, dict) or data_type.get("type") not in _DATA_TYPES:
        raise ValidationException(
            f"propertyDefinitions.{name}.dataType.type must be one of {', '.join(sorted(_DATA_TYPES))}"
        )


def _definition_response(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dataType": copy.deepcopy(d.get("dataType", {"type": "STRING"})),
        "isTimeSeries": bool(d.get("isTimeSeries", False)),
        "isRequiredInEntity": bool(d.get("isRequiredInEntity", False)),
        "isExternalId": bool(d.get("isExternalId", False)),
        "isStoredExternally": bool(d.get("isStoredExternally", False)),
        "isImported": False,
        "isFinal": False,
        "isInherited": bool(d.get("_inherited", False)),
    }
    for key in ("defaultValue", "configuration", "displayName"):
        if key in d:
            out[key] = copy.deepcopy(d[key])
    return out


def _property_requests(updates: Any) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in (u or {}).items() if k in ("definition", "value")} for name, u in (updates or {}).items()}


def _apply_component_update(component: Component, update: dict[str, Any], reset: bool) -> None:
    if "description" in update:
        component.description = update["description"]
    if "componentTypeId" in update and update["componentTypeId"] != component.component_type_id:
        raise ValidationException("componentUpdates: the component type of an existing component cannot change")
    for pname, pu in (update.get("propertyUpdates") or {}).items():
        kind = (pu or {}).get("updateType", "UPDATE")
        if kind == "DELETE":
            component.properties.pop(pname, None)
        elif kind == "RESET" or reset:
            component.properties.get(pname, {}).pop("value", None)
        elif kind in ("UPDATE", "CREATE"):
            entry = component.properties.setdefault(pname, {})
            for key in ("definition", "value"):
                if key in pu:
                    entry[key] = copy.deepcopy(pu[key])
        else:
            raise ValidationException(f"propertyUpdates.{pname}.updateType: unknown value {kind!r}")
    if "propertyGroupUpdates" in update:
        for gname, gu in (update["propertyGroupUpdates"] or {}).items():
            if (gu or {}).get("updateType") == "DELETE":
                component.property_groups.pop(gname, None)
            else:
                component.property_groups[gname] = {k: v for k, v in (gu or {}).items() if k != "updateType"}


def _component_type_matches(ct: ComponentType, f: dict[str, Any]) -> bool:
    if "extendsFrom" in f:
        return f["extendsFrom"] in ct.extends_from
    if "namespace" in f:
        return ct.component_type_id.startswith(f["namespace"])
    if "isAbstract" in f:
        return ct.is_abstract == bool(f["isAbstract"])
    return True


def _entity_matches(e: Entity, f: dict[str, Any]) -> bool:
    if "parentEntityId" in f:
        return (e.parent_id or ROOT) == f["parentEntityId"]
    if "componentTypeId" in f:
        return any(c.component_type_id == f["componentTypeId"] for c in e.components.values())
    if "externalId" in f:
        return any(
            p.get("value", {}).get("stringValue") == f["externalId"]
            for c in e.components.values()
            for p in c.properties.values()
        )
    return True


class TwinMakerBackends(RegionalBackends[TwinMakerBackend]):
    def __init__(self, faults: Faults) -> None:
        super().__init__(TwinMakerBackend, faults)
