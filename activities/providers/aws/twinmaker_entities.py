"""L4 (kind `twinmaker-entities`): the twin's entity tree in its TwinMaker workspace, from the
spec's AWS hierarchy. Entities are created parents first (a child waits, through `Pending`,
until its parent is `ACTIVE`); each `component` node becomes a component on its parent entity,
bound to the device's component type (`<twin>-<iotDeviceId>` unless it names one). Entities
of the workspace that the hierarchy no longer has are deleted, so the tree converges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from activities.providers.aws._common import AwsResource, client, get_or_none, pending, tags
from activities.providers.aws.twinmaker_workspace import workspace_tags
from activities.providers.lifecycle import merge_action
from activities.providers.typed import may_delete
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall
from shared.resources.aws import TwinMakerEntitiesConfig, TwinMakerEntity

ROOT = "$ROOT"


@dataclass
class WantedEntity:
    entity_id: str
    name: str
    parent: str | None
    components: dict[str, str]
    """Component name -> component type id."""


def wanted_entities(call: ResourceCall, config: TwinMakerEntitiesConfig) -> list[WantedEntity]:
    """The tree flattened parents first; an entity id used twice is refused."""
    out: list[WantedEntity] = []

    def walk(node: TwinMakerEntity, parent: str | None) -> None:
        out.append(WantedEntity(node.entity_id, node.name, parent,
                                {c.name: c.component_type_id for c in node.components}))
        for child in node.children:
            walk(child, node.entity_id)

    for root in config.entities:
        walk(root, None)
    seen: set[str] = set()
    for e in out:
        if e.entity_id in seen:
            raise PermanentError(f"{call.resource.id}: entity id {e.entity_id!r} appears twice in the hierarchy")
        seen.add(e.entity_id)
    return out


def list_entities(config: TwinMakerEntitiesConfig) -> list[dict[str, Any]] | None:
    """Every entity of the workspace, or None when the workspace does not exist."""
    tm = client("iottwinmaker", config.region)
    out: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"workspaceId": config.workspace, "maxResults": 200}
        if token:
            kwargs["nextToken"] = token
        page = get_or_none(partial(tm.list_entities, **kwargs))
        if page is None:
            return None
        out.extend(page.get("entitySummaries") or [])
        token = page.get("nextToken")
        if not token:
            return out


def _state(entity: dict[str, Any]) -> str:
    return str((entity.get("status") or {}).get("state") or "ACTIVE")


@register("aws", "twinmaker-entities")
class TwinMakerEntities(AwsResource[TwinMakerEntitiesConfig]):
    """The tree as a whole: `describe` is the workspace's entity list (None: no workspace)."""

    model = TwinMakerEntitiesConfig
    label = "entities"

    def describe(self, call: ResourceCall, config: TwinMakerEntitiesConfig) -> list[dict[str, Any]] | None:
        return list_entities(config)

    def converge(self, call: ResourceCall, config: TwinMakerEntitiesConfig, action: Action) -> EnsureResult:
        tm = client("iottwinmaker", config.region)
        ws = config.workspace
        wanted = wanted_entities(call, config)
        existing = self.found(call, config)
        if existing is None:
            raise PermanentError(f"TwinMaker workspace {ws} does not exist (deploy twinmaker-workspace first)")
        by_id = {e["entityId"]: e for e in existing}
        wrote = False
        for entity in wanted:
            if entity.parent is not None and (entity.parent not in by_id or _state(by_id[entity.parent]) != "ACTIVE"):
                return pending(merge_action(action, "updated") if wrote else action,
                               f"entity {entity.entity_id} waits for its parent {entity.parent}")
            summary = by_id.get(entity.entity_id)
            if summary is None:
                created = tm.create_entity(
                    workspaceId=ws, entityId=entity.entity_id, entityName=entity.name,
                    parentEntityId=entity.parent or ROOT,
                    components={c: {"componentTypeId": t} for c, t in entity.components.items()},
                    tags=tags(call),
                )
                by_id[entity.entity_id] = {"entityId": entity.entity_id, "parentEntityId": entity.parent or ROOT,
                                           "status": {"state": created.get("state", "CREATING")}}
                action = merge_action(action, "created" if action == "unchanged" and not existing else "updated")
                wrote = True
                continue
            if _state(summary) in ("CREATING", "UPDATING"):
                continue
            if self._reconcile_one(config, entity, summary):
                action = merge_action(action, "updated")
                wrote = True
        wanted_ids = {e.entity_id for e in wanted}
        for stale in existing:
            if stale["entityId"] not in wanted_ids and stale["entityId"] in by_id:
                tm.delete_entity(workspaceId=ws, entityId=stale["entityId"], isRecursive=True)
                action = merge_action(action, "updated")
                wrote = True
                break  # a recursive delete may remove other stale entities: re-list on the next poll
        if wrote or any(_state(by_id[e.entity_id]) != "ACTIVE" for e in wanted):
            return pending(action, "entities are being created or updated")
        return EnsureResult(action=action)

    def _reconcile_one(self, config: TwinMakerEntitiesConfig, entity: WantedEntity, summary: dict[str, Any]) -> bool:
        tm = client("iottwinmaker", config.region)
        ws = config.workspace
        body: dict[str, Any] = {}
        parent = summary.get("parentEntityId") or ROOT
        if parent != (entity.parent or ROOT):
            body["parentEntityUpdate"] = (
                {"updateType": "UPDATE", "parentEntityId": entity.parent} if entity.parent else {"updateType": "DELETE"}
            )
        if summary.get("entityName") not in (None, entity.name):
            body["entityName"] = entity.name
        full = tm.get_entity(workspaceId=ws, entityId=entity.entity_id)
        have = {name: c.get("componentTypeId") for name, c in (full.get("components") or {}).items()}
        updates: dict[str, Any] = {}
        for cname, type_id in entity.components.items():
            if cname not in have:
                updates[cname] = {"updateType": "CREATE", "componentTypeId": type_id}
            elif have[cname] != type_id:
                # A component's type cannot change: delete now, re-create on the next converge.
                updates[cname] = {"updateType": "DELETE"}
        for cname in have:
            if cname not in entity.components:
                updates[cname] = {"updateType": "DELETE"}
        if updates:
            body["componentUpdates"] = updates
        if not body:
            return False
        tm.update_entity(workspaceId=ws, entityId=entity.entity_id, **body)
        return True

    def owner_tags(self, call: ResourceCall, config: TwinMakerEntitiesConfig, current: Any) -> dict[str, str]:
        """The entities are the workspace's: its owner is theirs."""
        ws = get_or_none(lambda: client("iottwinmaker", config.region).get_workspace(workspaceId=config.workspace))
        return {} if ws is None else workspace_tags(config.region, ws)

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        existing = list_entities(config)
        if existing is None or not self.ours(call, config, existing):
            return ReadResult(exists=False)
        wanted = {e.entity_id for e in wanted_entities(call, config)}
        have = {e["entityId"] for e in existing}
        return ReadResult(exists=bool(wanted & have) or (not wanted and not have), details={
            "entities": sorted(have), "missing": sorted(wanted - have), "extra": sorted(have - wanted)})

    def delete(self, call: ResourceCall) -> EnsureResult:
        return self._delete(call, self.config(call))

    def poll_delete(self, call: ResourceCall, config: TwinMakerEntitiesConfig) -> EnsureResult:
        return self._delete(call, config)

    def _delete(self, call: ResourceCall, config: TwinMakerEntitiesConfig) -> EnsureResult:
        """Delete the roots recursively until the workspace holds no entity (polled)."""
        existing = list_entities(config)
        if existing is None or (not existing and call.pending is None):
            return EnsureResult(action="absent")
        if not may_delete(call, config, self.owner_tags(call, config, existing), f"entities of {config.workspace}"):
            return EnsureResult(action="absent")
        if not existing:
            return EnsureResult(action="deleted")
        tm = client("iottwinmaker", config.region)
        ids = {e["entityId"] for e in existing}
        for root in [e for e in existing if (e.get("parentEntityId") or ROOT) not in ids]:
            get_or_none(partial(tm.delete_entity, workspaceId=config.workspace, entityId=root["entityId"],
                                isRecursive=True))
        return pending("deleted", "entities are being deleted", stage="delete")
