"""L4: the twins and relationships of the hierarchy, with stable ids.

Reconcile, not skip: a twin of the right model only gets a JSON Patch of the desired properties
that differ (so values written at runtime, e.g. `lastTemperature`, are kept); a twin of another
model is replaced. Relationships are compared by target and name. Writes to one twin stay under
the service's 10 per second; a large graph is walked across several activity calls (`Pending`
with a cursor), each well under a minute. Delete: a twin's relationships (both ways) go first.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from activities.providers.azure._adt import data_client, data_plane, existing_client
from activities.providers.azure._common import Throttle, get_or_none, poll_seconds
from activities.providers.typed import TypedProvider, to_create
from activities.registry import register
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.resources.azure import DigitalTwin, TwinGraphConfig, TwinRelationship

# Digital Twins allows 10 writes per second on one twin (and its relationships): stay below.
WRITES_PER_TWIN_PER_SECOND = 8.0
CALL_BUDGET_SECONDS = 20.0
_throttle = Throttle(WRITES_PER_TWIN_PER_SECOND)


def _model(twin: dict[str, Any]) -> str:
    return str((twin.get("$metadata") or {}).get("$model") or "")


def _items(config: TwinGraphConfig) -> list[DigitalTwin | TwinRelationship]:
    """Twins first, then the relationships between them."""
    return [*config.twins, *config.relationships]


def reconcile_twin(client: Any, twin: DigitalTwin) -> str:
    """'created', 'updated' or 'unchanged' for one twin."""
    tid = twin.twin_id
    current = data_plane(f"read twin {tid}", lambda: get_or_none(lambda: client.get_digital_twin(tid)))
    body = {"$metadata": {"$model": twin.model}, **twin.properties}
    if current is None or _model(current) != twin.model:
        _throttle.wait(tid)
        data_plane(f"write twin {tid}", lambda: client.upsert_digital_twin(tid, body))
        return "created" if current is None else "updated"
    patch = [{"op": "add", "path": f"/{k}", "value": v} for k, v in twin.properties.items() if current.get(k) != v]
    if not patch:
        return "unchanged"
    _throttle.wait(tid)
    data_plane(f"update twin {tid}", lambda: client.update_digital_twin(tid, patch))
    return "updated"


def reconcile_relationship(client: Any, rel: TwinRelationship) -> str:
    src, rid = rel.source_id, rel.relationship_id
    body = {"$relationshipId": rid, "$targetId": rel.target_id, "$relationshipName": rel.name}
    current = data_plane(f"read relationship {rid}", lambda: get_or_none(lambda: client.get_relationship(src, rid)))
    if current is not None and all(current.get(k) == v for k, v in body.items()):
        return "unchanged"
    _throttle.wait(src)
    data_plane(f"write relationship {rid}", lambda: client.upsert_relationship(src, rid, {**body, "$sourceId": src}))
    return "created" if current is None else "updated"


@register("azure", "twin-graph")
class TwinGraph(TypedProvider[TwinGraphConfig]):
    model = TwinGraphConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        client = data_client(call, config)
        first = config.twins[0].twin_id if config.twins else None
        if first is not None and data_plane(f"read twin {first}", lambda: get_or_none(
                lambda: client.get_digital_twin(first))) is None:
            return to_create(f"twin graph of {config.instance} is being created")  # a graph not there yet
        return self._walk(call, config, 0, set())

    def poll(self, call: ResourceCall) -> EnsureResult:
        token = call.pending.token if call.pending is not None else {}
        return self._walk(call, self.config(call), int(token.get("cursor", 0)), set(token.get("seen", [])),
                          token.get("action") == "created")

    def _walk(self, call: ResourceCall, config: TwinGraphConfig, cursor: int, seen: set[str],
              created: bool = False) -> EnsureResult:
        """From item `cursor` on; `created`: the graph is one `ensure` decided to create."""
        items = _items(config)
        client = data_client(call, config)
        deadline = time.monotonic() + CALL_BUDGET_SECONDS
        while cursor < len(items):
            item = items[cursor]
            outcome = reconcile_twin(client, item) if isinstance(item, DigitalTwin) else reconcile_relationship(
                client, item)
            seen.add(outcome)
            cursor += 1
            if cursor < len(items) and time.monotonic() > deadline:
                token: dict[str, object] = {"cursor": cursor, "seen": sorted(seen)}
                if created:
                    token["action"] = "created"
                return EnsureResult("created" if created else _action(seen), pending=Pending(
                    token, poll_seconds(), f"twin graph: {cursor}/{len(items)}"))
        return EnsureResult("created" if created else _action(seen))

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        client = existing_client(call, config)
        if client is None:
            return ReadResult(False)
        missing = []
        for twin in config.twins:
            if get_or_none(lambda t=twin: client.get_digital_twin(t.twin_id)) is None:  # type: ignore[misc]
                missing.append(twin.twin_id)
        for rel in config.relationships:
            if get_or_none(lambda r=rel: client.get_relationship(r.source_id, r.relationship_id)) is None:  # type: ignore[misc]
                missing.append(rel.relationship_id)
        return ReadResult(not missing, details={"missing": missing})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        client = existing_client(call, config)
        if client is None:
            return EnsureResult("absent")  # the instance is gone, and the graph with it
        deleted = 0
        twins = [twin.twin_id for twin in config.twins]
        for tid in twins:
            # Every relationship touching the twin goes before it (ours and anyone else's).
            for rel in data_plane("list relationships", lambda t=tid: list(get_or_none(
                    lambda: list(client.list_relationships(t))) or [])):  # type: ignore[misc]
                deleted += self._delete(lambda r=rel: client.delete_relationship(r["$sourceId"], r["$relationshipId"]))
            for inc in data_plane("list incoming relationships", lambda t=tid: list(get_or_none(
                    lambda: list(client.list_incoming_relationships(t))) or [])):  # type: ignore[misc]
                deleted += self._delete(lambda r=inc: client.delete_relationship(r.source_id, r.relationship_id))
        for tid in twins:
            deleted += self._delete(lambda t=tid: client.delete_digital_twin(t))
        return EnsureResult("deleted" if deleted else "absent")

    @staticmethod
    def _delete(fn: Any) -> int:
        try:
            data_plane("delete", fn)
            return 1
        except ResourceNotFoundError:
            return 0
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return 0
            raise


def _action(seen: set[str]) -> Action:
    if seen <= {"unchanged"}:
        return "unchanged"
    return "created" if seen == {"created"} else "updated"
