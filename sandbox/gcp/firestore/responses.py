"""Firestore Admin v1 REST handlers: databases, composite indexes and field (TTL) settings, each
change a long-running operation as `FirestoreAdminClient(transport="rest")` expects."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.core.http import json_response, no_faults
from sandbox.gcp.backends import backends
from sandbox.gcp.common import (
    PROJECT_ID,
    GoogleError,
    api,
    now_rfc3339,
    page,
    parse_message,
    read_json,
    update_mask,
)

ADMIN = "type.googleapis.com/google.firestore.admin.v1."


def _types() -> Any:
    from google.cloud.firestore_admin_v1.types import database, field, index

    return database, field, index


def _db(request: web.Request) -> str:
    project = request.match_info["project"]
    if project != PROJECT_ID:
        raise GoogleError("PERMISSION_DENIED", f"The caller does not have permission (project {project}).")
    return f"projects/{project}/databases/{request.match_info['database']}"


@api("firestore:CreateDatabase", mutating=True)
async def create_database(request: web.Request) -> web.Response:
    database, _, _ = _types()
    project = request.match_info["project"]
    if project != PROJECT_ID:
        raise GoogleError("PERMISSION_DENIED", f"The caller does not have permission (project {project}).")
    body = parse_message(database.Database, await read_json(request), "database")
    database_id = request.query.get("databaseId", "")
    if not database_id:
        raise GoogleError("INVALID_ARGUMENT", "database_id: required")
    b = backends(request)
    db = b.firestore.create_database(f"projects/{project}/databases/{database_id}", body)
    op = b.operations.start(db["name"], ADMIN + "CreateDatabaseMetadata", {})
    b.operations.finish(op, ADMIN + "Database", db)
    return json_response(op.to_json())


@api("firestore:GetDatabase", mutating=False)
async def get_database(request: web.Request) -> web.Response:
    return json_response(backends(request).firestore.database(_db(request)).body)


@api("firestore:ListDatabases", mutating=False)
async def list_databases(request: web.Request) -> web.Response:
    return json_response({"databases": backends(request).firestore.list_databases(request.match_info["project"])})


@api("firestore:DeleteDatabase", mutating=True)
async def delete_database(request: web.Request) -> web.Response:
    b = backends(request)
    db = b.firestore.delete_database(_db(request))
    op = b.operations.start(db["name"], ADMIN + "DeleteDatabaseMetadata", {})
    b.operations.finish(op, ADMIN + "Database", db)
    return json_response(op.to_json())


@api("firestore:CreateIndex", mutating=True)
async def create_index(request: web.Request) -> web.Response:
    _, _, index = _types()
    body = parse_message(index.Index, await read_json(request), "index")
    b = backends(request)
    created = b.firestore.create_index(_db(request), request.match_info["group"], body)
    op = b.operations.start(_db(request), ADMIN + "IndexOperationMetadata",
                            {"startTime": now_rfc3339(), "index": created["name"], "state": "SUCCESSFUL"},
                            end_field="endTime")
    b.operations.finish(op, ADMIN + "Index", created)
    return json_response(op.to_json())


@api("firestore:ListIndexes", mutating=False)
async def list_indexes(request: web.Request) -> web.Response:
    items = backends(request).firestore.indexes(_db(request), request.match_info["group"])
    chunk, token = page(items, request)
    out: dict[str, Any] = {"indexes": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return json_response(out)


def _index_name(request: web.Request) -> str:
    return f"{_db(request)}/collectionGroups/{request.match_info['group']}/indexes/{request.match_info['index']}"


@api("firestore:GetIndex", mutating=False)
async def get_index(request: web.Request) -> web.Response:
    return json_response(backends(request).firestore.index(_index_name(request)))


@api("firestore:DeleteIndex", mutating=True)
async def delete_index(request: web.Request) -> web.Response:
    backends(request).firestore.delete_index(_index_name(request))
    return json_response({})


def _field_name(request: web.Request) -> str:
    return f"{_db(request)}/collectionGroups/{request.match_info['group']}/fields/{request.match_info['field']}"


@api("firestore:UpdateField", mutating=True)
async def update_field(request: web.Request) -> web.Response:
    _, field, _ = _types()
    name = _field_name(request)
    body = parse_message(field.Field, {**(await read_json(request)), "name": name}, "field")
    b = backends(request)
    updated = b.firestore.update_field(name, body, update_mask(request))
    meta: dict[str, Any] = {"startTime": now_rfc3339(), "field": name, "state": "SUCCESSFUL"}
    if "ttlConfig" in body:
        meta["ttlConfigDelta"] = {"changeType": "ADD"}
    op = b.operations.start(_db(request), ADMIN + "FieldOperationMetadata", meta, end_field="endTime")
    b.operations.finish(op, ADMIN + "Field", updated)
    return json_response(op.to_json())


@api("firestore:GetField", mutating=False)
async def get_field(request: web.Request) -> web.Response:
    return json_response(backends(request).firestore.get_field_config(_field_name(request)))


@no_faults
@api("firestore:GetOperation", mutating=False)
async def get_operation(request: web.Request) -> web.Response:
    name = f"{_db(request)}/operations/{request.match_info['operation']}"
    return json_response(backends(request).operations.get(name).to_json())
