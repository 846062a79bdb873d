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

from activities.providers.azure._adt import data_plane
from activities.providers.azure._common import Throttle, cfg, get_or_none, poll_seconds
from activities.providers.azure.digital_twins import data_client
from activities.registry import Provider, register
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall

# Digital Twins allows 10 writes per second on one twin (and its relationships): stay below.
WRITES_PER_TWIN_PER_SECOND = 8.0
CALL_BUDGET_SECONDS = 20.0
_throttle = Throttle(WRITES_PER_TWIN_PER_SECOND)


def _desired_properties(twin: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in twin.items() if not k.startswith("$")}


def _model(twin: dict[str, Any]) -> str:
    return str((twin.get("$metadata") or {}).get("$model") or "")


def _items(call: ResourceCall) -> list[tuple[str, dict[str, Any]]]:
    twins = [("twin", dict(t)) for t in cfg(call, "twins", [])]
    rels = [("relationship", dict(r)) for r in cfg(call, "relationships", [])]
    for kind, item in twins + rels:
        if not item.get("$dtId") or (kind == "relationship" and not item.get("$relationshipId")):
            raise PermanentError(f"{call.resource.id}: a {kind} lacks $dtId/$relationshipId: {str(item)[:120]}")
    return twins + rels


def reconcile_twin(client: Any, twin: dict[str, Any]) -> str:
    """'created', 'updated' or 'unchanged' for one twin."""
    tid = str(twin["$dtId"])
    current = data_plane(f"read twin {tid}", lambda: get_or_none(lambda: client.get_digital_twin(tid)))
    body = {"$metadata": {"$model": _model(twin)}, **_desired_properties(twin)}
    if current is None or _model(current) != _model(twin):
        _throttle.wait(tid)
        data_plane(f"write twin {tid}", lambda: client.upsert_digital_twin(tid, body))
        return "created" if current is None else "updated"
    patch = [{"op": "add", "path": f"/{k}", "value": v}
             for k, v in _desired_properties(twin).items() if current.get(k) != v]
    if not patch:
        return "unchanged"
    _throttle.wait(tid)
    data_plane(f"update twin {tid}", lambda: client.update_digital_twin(tid, patch))
    return "updated"


def reconcile_relationship(client: Any, rel: dict[str, Any]) -> str:
    src, rid = str(rel["$dtId"]), str(rel["$relationshipId"])
    body = {k: v for k, v in rel.items() if k != "$dtId"}
    body["$sourceId"] = src
    current = data_plane(f"read relationship {rid}", lambda: get_or_none(lambda: client.get_relationship(src, rid)))
    if current is not None and all(current.get(k) == v for k, v in body.items() if k != "$sourceId"):
        return "unchanged"
    _throttle.wait(src)
    data_plane(f"write relationship {rid}", lambda: client.upsert_relationship(src, rid, body))
    return "created" if current is None else "updated"


@register("azure", "twin-graph")
class TwinGraph(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._walk(call, 0, set())

    def poll(self, call: ResourceCall) -> EnsureResult:
        token = call.pending.token if call.pending is not None else {}
        return self._walk(call, int(token.get("cursor", 0)), set(token.get("seen", [])))

    def _walk(self, call: ResourceCall, cursor: int, seen: set[str]) -> EnsureResult:
        items = _items(call)
        client = data_client(call)
        deadline = time.monotonic() + CALL_BUDGET_SECONDS
        while cursor < len(items):
            kind, item = items[cursor]
            outcome = reconcile_twin(client, item) if kind == "twin" else reconcile_relationship(client, item)
            seen.add(outcome)
            cursor += 1
            if cursor < len(items) and time.monotonic() > deadline:
                token = {"cursor": cursor, "seen": sorted(seen)}
                return EnsureResult(_action(seen), pending=Pending(token, poll_seconds(),
                                                                   f"twin graph: {cursor}/{len(items)}"))
        return EnsureResult(_action(seen))

    def read(self, call: ResourceCall) -> ReadResult:
        try:
            client = data_client(call)
        except PermanentError:
            return ReadResult(False)
        missing = []
        for kind, item in _items(call):
            if kind == "twin":
                found = get_or_none(lambda i=item: client.get_digital_twin(i["$dtId"]))  # type: ignore[misc]
            else:
                found = get_or_none(lambda i=item: client.get_relationship(i["$dtId"], i["$relationshipId"]))  # type: ignore[misc]
            if found is None:
                missing.append(item.get("$relationshipId") or item["$dtId"])
        return ReadResult(not missing, details={"missing": missing})

    def delete(self, call: ResourceCall) -> EnsureResult:
        try:
            client = data_client(call)
        except PermanentError:
            return EnsureResult("absent")  # the instance is gone, and the graph with it
        deleted = 0
        twins = [str(t["$dtId"]) for t in cfg(call, "twins", [])]
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
