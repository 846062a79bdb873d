"""HTTP side of the Cosmos DB data plane (gateway mode, as azure-cosmos uses it): resolve the
account, check the master-key signature, shape answers and errors.

Paths are relative to the account (`/cosmos/<account>/`): `GET /` (account), `/dbs[/{db}]`,
`/dbs/{db}/colls[/{coll}]`, `.../pkranges`, `POST .../docs` (create, upsert with
`x-ms-documentdb-is-upsert`, query with `x-ms-documentdb-isquery`), `GET/PUT/DELETE .../docs/{id}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox.cosmos.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PKRANGE_ID,
    UNDEFINED_PK,
    Account,
    Container,
    CosmosBackend,
    CosmosError,
    check_authorization,
    partition_key_json,
)
from sandbox.cosmos.query import QueryError, parse
from sandbox.cosmos.query import execute as run_query

BACKEND_KEY: web.AppKey[CosmosBackend] = web.AppKey("cosmos_backend", CosmosBackend)

H_PK = "x-ms-documentdb-partitionkey"
H_UPSERT = "x-ms-documentdb-is-upsert"
H_IS_QUERY = "x-ms-documentdb-isquery"
H_QUERY_PLAN = "x-ms-cosmos-is-query-plan-request"
H_CONTINUATION = "x-ms-continuation"
H_MAX_ITEMS = "x-ms-max-item-count"

Handler = Callable[[web.Request, Account], Awaitable[web.StreamResponse]]


def _base_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "x-ms-activity-id": str(uuid.uuid4()),
        "x-ms-request-charge": "1",
        "x-ms-gatewayversion": "2.0.0",
        "x-ms-serviceversion": "version=2.14.0.0",
        "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
    }
    headers.update(extra or {})
    return headers


def error_response(err: CosmosError) -> web.Response:
    headers = _base_headers({"x-ms-substatus": str(err.substatus)})
    if err.status == 429:
        headers["x-ms-retry-after-ms"] = "100"
    return web.Response(body=json.dumps(err.body()).encode(), status=err.status, content_type="application/json", headers=headers)


def fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    """Injected 429/503 in Cosmos DB's shape (the SDK waits `x-ms-retry-after-ms` on 429)."""
    if status == 429:
        err = CosmosError(429, "429", "Message: {\"Errors\":[\"Request rate is large.\"]}", substatus=3200)
        resp = error_response(err)
        resp.headers["x-ms-retry-after-ms"] = str(retry_after * 1000)
        return resp
    return error_response(CosmosError(503, "ServiceUnavailable", "The service is temporarily unavailable. Retry later."))


def json_ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", headers=_base_headers(headers)
    )


def cosmos_handler(
    resource_type: str, link: Callable[[dict[str, str]], str], read_only: bool
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler with account lookup, master-key verification and error shaping.

    `resource_type` and `link(match_info)` give what the client signed (e.g. `docs` and
    `dbs/db/colls/c` for a query); `read_only` says whether read-only keys may sign it."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            backend = request.app[BACKEND_KEY]
            try:
                account = backend.account(request.match_info["account"])
                if account is None:
                    raise CosmosError(
                        404,
                        "NotFound",
                        f"No Cosmos DB account named {request.match_info['account']!r} is served here: it does not "
                        "exist or was deleted. Read the account's properties.documentEndpoint from ARM.",
                    )
                check_authorization(
                    request.headers.get("authorization"),
                    request.headers.get("x-ms-date"),
                    request.method,
                    resource_type,
                    link(dict(request.match_info)),
                    backend.keys(account),
                    read_only,
                )
                return await fn(request, account)
            except CosmosError as err:
                return error_response(err)
            except QueryError as err:
                return error_response(CosmosError(400, "BadRequest", f"{err} (query: see the request body)"))

        handler.__name__ = fn.__name__
        return handler

    return wrap


def _none(_: dict[str, str]) -> str:
    return ""


def _db_link(m: dict[str, str]) -> str:
    return f"dbs/{m['db']}"


def _coll_link(m: dict[str, str]) -> str:
    return f"dbs/{m['db']}/colls/{m['coll']}"


def _doc_link(m: dict[str, str]) -> str:
    return f"dbs/{m['db']}/colls/{m['coll']}/docs/{m['doc']}"


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise CosmosError(400, "BadRequest", "The request body is empty; a JSON document is required.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CosmosError(400, "BadRequest", f"The request body is not valid JSON: {exc}.") from exc


def _partition_key(request: web.Request) -> str | None:
    raw = request.headers.get(H_PK)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise CosmosError(400, "BadRequest", f"The partition key header {H_PK} is not a JSON array: {raw!r}.") from exc
    if not isinstance(value, list) or len(value) != 1:
        raise CosmosError(
            400,
            "BadRequest",
            f"The partition key header {H_PK} must be a JSON array of one value (e.g. [\"device-1\"]), got {raw!r}.",
        )
    return UNDEFINED_PK if value[0] == {} else partition_key_json(value[0])


def _doc_headers(db: str, coll: str, container: Container, etag: str | None = None) -> dict[str, str]:
    headers = {
        "x-ms-session-token": f"{PKRANGE_ID}:-1#{container.lsn}",
        "x-ms-alt-content-path": f"dbs/{db}/colls/{coll}",
        "x-ms-content-path": container.rid,
        "lsn": str(container.lsn),
    }
    if etag:
        headers["etag"] = etag
    return headers


# --- account, databases, containers --------------------------------------------------------------


@cosmos_handler("", _none, read_only=True)
async def get_account(request: web.Request, account: Account) -> web.StreamResponse:
    endpoint = request.app[BACKEND_KEY].endpoint(account.name)
    location = [{"name": account.location, "databaseAccountEndpoint": endpoint}]
    return json_ok(
        {
            "_self": "",
            "id": account.name,
            "_rid": f"{account.name}.documents.azure.com",
            "media": "//media/",
            "addresses": "//addresses/",
            "_dbs": "//dbs/",
            "writableLocations": location,
            "readableLocations": location,
            "enableMultipleWriteLocations": False,
            "continuousBackupEnabled": False,
            "enableNRegionSynchronousCommit": False,
            "userReplicationPolicy": {"asyncReplication": False, "minReplicaSetSize": 3, "maxReplicasetSize": 4},
            "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
            "systemReplicationPolicy": {"minReplicaSetSize": 3, "maxReplicasetSize": 4},
            "readPolicy": {"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
            "queryEngineConfiguration": json.dumps(
                {"maxSqlQueryInputLength": 262144, "maxJoinsPerSqlQuery": 5, "queryDefaultOrderByEnabled": True}
            ),
        }
    )


@cosmos_handler("dbs", _none, read_only=True)
async def list_databases(request: web.Request, account: Account) -> web.StreamResponse:
    dbs = [d.body() for d in list(account.databases.values())]
    return json_ok({"_rid": "", "Databases": dbs, "_count": len(dbs)})


@cosmos_handler("dbs", _db_link, read_only=True)
async def get_database(request: web.Request, account: Account) -> web.StreamResponse:
    db = request.app[BACKEND_KEY].database(account, request.match_info["db"])
    return json_ok(db.body(), headers={"etag": db.etag})


@cosmos_handler("colls", _db_link, read_only=True)
async def list_containers(request: web.Request, account: Account) -> web.StreamResponse:
    db = request.app[BACKEND_KEY].database(account, request.match_info["db"])
    colls = [c.body(db.rid) for c in list(db.containers.values())]
    return json_ok({"_rid": db.rid, "DocumentCollections": colls, "_count": len(colls)})


@cosmos_handler("colls", _coll_link, read_only=True)
async def get_container(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    headers = {
        "etag": coll.etag,
        "x-ms-resource-quota": "documentSize=51200;documentsSize=52428800;collectionSize=52428800;",
        "x-ms-resource-usage": f"documentSize=0;documentsSize=0;documentsCount={len(coll.items)};collectionSize=0;",
        "x-ms-alt-content-path": f"dbs/{db.id}",
        "x-ms-content-path": db.rid,
    }
    return json_ok(coll.body(db.rid), headers=headers)


@cosmos_handler("pkranges", _coll_link, read_only=True)
async def get_pkranges(request: web.Request, account: Account) -> web.StreamResponse:
    """One physical partition covering the whole hash range. Read as a change feed by the SDK: a
    repeated read with `If-None-Match` = the etag answers 304 Not Modified."""
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    etag = f'"{coll.rid}-pkranges"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=_base_headers({"etag": etag}))
    rng = {
        "_rid": coll.rid + "AgAAAAAAAA==",
        "id": PKRANGE_ID,
        "_etag": etag,
        "minInclusive": "",
        "maxExclusive": "FF",
        "ridPrefix": 0,
        "_self": f"dbs/{db.rid}/colls/{coll.rid}/pkranges/{coll.rid}AgAAAAAAAA==/",
        "throughputFraction": 1,
        "status": "online",
        "parents": [],
        "_ts": coll.ts,
        "lsn": coll.lsn,
    }
    return json_ok(
        {"_rid": coll.rid, "PartitionKeyRanges": [rng], "_count": 1},
        headers={"etag": etag, "x-ms-alt-content-path": f"dbs/{db.id}/colls/{coll.id}", "x-ms-content-path": coll.rid},
    )


# --- items ---------------------------------------------------------------------------------------


def _page(request: web.Request, rows: list[Any]) -> tuple[list[Any], str | None]:
    raw_max = request.headers.get(H_MAX_ITEMS, "")
    try:
        size = int(raw_max) if raw_max else DEFAULT_PAGE_SIZE
    except ValueError as exc:
        raise CosmosError(400, "BadRequest", f"{H_MAX_ITEMS} must be an integer, got {raw_max!r}.") from exc
    size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
    offset = 0
    token = request.headers.get(H_CONTINUATION)
    if token:
        try:
            offset = int(json.loads(base64.b64decode(token.encode()).decode())["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CosmosError(400, "BadRequest", "The continuation token is malformed.") from exc
    page = rows[offset : offset + size]
    next_token = None
    if offset + size < len(rows):
        next_token = base64.b64encode(json.dumps({"offset": offset + size}).encode()).decode()
    return page, next_token


def _feed_response(request: web.Request, db: str, coll: str, container: Container, rows: list[Any]) -> web.Response:
    page, token = _page(request, rows)
    headers = _doc_headers(db, coll, container)
    headers["x-ms-item-count"] = str(len(page))
    if token:
        headers[H_CONTINUATION] = token
    return json_ok({"_rid": container.rid, "Documents": page, "_count": len(page)}, headers=headers)


@cosmos_handler("docs", _coll_link, read_only=True)
async def read_feed(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    return _feed_response(request, db.id, coll.id, coll, coll.live_items(_partition_key(request)))


def _truthy(request: web.Request, header: str) -> bool:
    return request.headers.get(header, "").lower() == "true"


async def post_docs(request: web.Request) -> web.StreamResponse:
    """`POST .../docs` is a query, a query-plan request, or a create/upsert; a query may be signed
    with a read-only key, a write may not."""
    if _truthy(request, H_IS_QUERY) or _truthy(request, H_QUERY_PLAN):
        return await _query_docs(request)
    return await _write_doc(request)


@cosmos_handler("docs", _coll_link, read_only=True)
async def _query_docs(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    body = await _read_json(request)
    if isinstance(body, str):
        body = {"query": body}
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise CosmosError(400, "BadRequest", 'The query body must be {"query": "...", "parameters": [...]}.')
    params_raw = body.get("parameters") or []
    if not isinstance(params_raw, list) or any(
        not isinstance(p, dict) or not isinstance(p.get("name"), str) or "value" not in p for p in params_raw
    ):
        raise CosmosError(400, "BadRequest", 'parameters: must be a list of {"name": "@p", "value": ...}.')
    parameters = {p["name"]: p["value"] for p in params_raw}
    query = parse(body["query"])
    if _truthy(request, H_QUERY_PLAN):
        return json_ok(_query_plan(query))
    pk = _partition_key(request)
    if pk is None and not _truthy(request, "x-ms-documentdb-query-enablecrosspartition") and len(
        {k for k, _ in list(coll.items)}
    ) > 1:
        raise CosmosError(
            400,
            "BadRequest",
            "Cross partition query is required but disabled. Please set x-ms-documentdb-query-enablecrosspartition "
            "to true, specify x-ms-documentdb-partitionkey, or revise your query to avoid this exception.",
        )
    # The container has one physical partition, so a cross-partition query runs here directly, with
    # the same result the SDK would assemble from a query plan.
    rows = run_query(query, parameters, coll.live_items(pk))
    return _feed_response(request, db.id, coll.id, coll, rows)


def _query_plan(query: Any) -> dict[str, Any]:
    """The query plan the gateway answers to a query-plan request. Every container here has one
    physical partition, and the gateway runs ORDER BY, TOP, DISTINCT and aggregates itself within a
    partition, so the plan asks the client for no merging of its own: run the query as written
    on the one range."""
    return {
        "partitionedQueryExecutionInfoVersion": 2,
        "queryInfo": {
            "distinctType": "None",
            "top": None,
            "offset": None,
            "limit": None,
            "orderBy": [],
            "orderByExpressions": [],
            "groupByExpressions": [],
            "groupByAliases": [],
            "aggregates": [],
            "groupByAliasToAggregateType": {},
            "rewrittenQuery": None,
            "hasSelectValue": query.value is not None,
            "hasNonStreamingOrderBy": False,
        },
        "queryRanges": [{"min": "", "max": "FF", "isMinInclusive": True, "isMaxInclusive": False}],
    }


@cosmos_handler("docs", _coll_link, read_only=False)
async def _write_doc(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    mode = "upsert" if _truthy(request, H_UPSERT) else "create"
    doc, created = coll.write_item(
        db.rid, await _read_json(request), _partition_key(request), mode, if_match=request.headers.get("If-Match")
    )
    return json_ok(doc, status=201 if created else 200, headers=_doc_headers(db.id, coll.id, coll, doc["_etag"]))


@cosmos_handler("docs", _doc_link, read_only=True)
async def get_doc(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    pk = _require_pk(request)
    doc = coll.get_item(pk, request.match_info["doc"])
    if doc is None:
        raise CosmosError(
            404,
            "NotFound",
            'Entity with the specified id does not exist in the system. More info: https://aka.ms/cosmosdb-tsg-not-found',
        )
    if request.headers.get("If-None-Match") == doc["_etag"]:
        return web.Response(status=304, headers=_base_headers(_doc_headers(db.id, coll.id, coll, doc["_etag"])))
    return json_ok(doc, headers=_doc_headers(db.id, coll.id, coll, doc["_etag"]))


@cosmos_handler("docs", _doc_link, read_only=False)
async def put_doc(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    doc, _ = coll.write_item(
        db.rid,
        await _read_json(request),
        _partition_key(request),
        "replace",
        item_id=request.match_info["doc"],
        if_match=request.headers.get("If-Match"),
    )
    return json_ok(doc, headers=_doc_headers(db.id, coll.id, coll, doc["_etag"]))


@cosmos_handler("docs", _doc_link, read_only=False)
async def delete_doc(request: web.Request, account: Account) -> web.StreamResponse:
    db, coll = request.app[BACKEND_KEY].container(account, request.match_info["db"], request.match_info["coll"])
    coll.delete_item(_require_pk(request), request.match_info["doc"], request.headers.get("If-Match"))
    return web.Response(status=204, headers=_base_headers(_doc_headers(db.id, coll.id, coll)))


def _require_pk(request: web.Request) -> str:
    pk = _partition_key(request)
    if pk is None:
        raise CosmosError(
            400,
            "BadRequest",
            "PartitionKey value must be supplied for this operation (x-ms-documentdb-partitionkey header).",
        )
    return pk
