"""Test servers for the payload tests: aiohttp apps on 127.0.0.1 in a background thread.

- `ThreadedServer`: any aiohttp app (optionally HTTPS with a trustme certificate).
- `function_url_app`: serves Lambda handlers as Function URLs (payload format 2.0 events).
- `azure_host_app`: serves the HTTP functions of a v2 `FunctionApp` under `/api/<route>`.
- `fake_cosmos_app`: a Cosmos DB gateway for item upserts, deletes and simple SQL queries.
- `fake_digital_twins_app` / `identity_app`: a Digital Twins data plane that records JSON Patch
  documents, and the App Service managed-identity token endpoint the SDK's
  ManagedIdentityCredential calls (IDENTITY_ENDPOINT / IDENTITY_HEADER).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import azure.functions as func
from aiohttp import web

from shared.contracts import StorageKey

IDENTITY_HEADER_VALUE = "identity-secret"


class ThreadedServer:
    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> ThreadedServer:
        self.thread.start()

        async def setup() -> int:
            self.runner = web.AppRunner(self.app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            sockets = site._server.sockets  # type: ignore[union-attr]
            return int(sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(setup(), self.loop).result(10)
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def function_url_event(path: str, headers: Mapping[str, str], body: bytes, method: str = "POST") -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
        "requestContext": {"http": {"method": method, "path": path}},
    }


def function_url_app(handlers: Mapping[str, Callable[[Any, Any], Any]]) -> web.Application:
    """POST /<name> -> handlers[name](Function URL event) -> its `statusCode`/`body`."""

    async def invoke(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in handlers:
            return web.json_response({"error": f"no function {name}"}, status=404)
        event = function_url_event(request.path, dict(request.headers), await request.read(), request.method)
        result = await asyncio.get_running_loop().run_in_executor(None, handlers[name], event, None)
        return web.Response(status=result["statusCode"], text=result["body"], content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{name}", invoke)
    return app


def http_functions(app: func.FunctionApp) -> dict[str, Callable[[func.HttpRequest], func.HttpResponse]]:
    """route -> user function of every HTTP function of a v2 app (get_functions() once)."""
    out = {}
    for fn in app.get_functions():
        trigger = fn.get_bindings_dict()["bindings"][0]
        if trigger["type"] == "httpTrigger":
            out[str(trigger.get("route") or fn.get_function_name())] = fn.get_user_function()
    return out


def azure_host_app(functions: Mapping[str, Callable[[func.HttpRequest], func.HttpResponse]]) -> web.Application:
    async def invoke(request: web.Request) -> web.Response:
        route = request.match_info["route"]
        if route not in functions:
            return web.json_response({"error": f"no function {route}"}, status=404)
        req = func.HttpRequest(request.method, str(request.url), headers=dict(request.headers),
                               params=dict(request.query), body=await request.read())
        res = await asyncio.get_running_loop().run_in_executor(None, functions[route], req)
        return web.Response(status=res.status_code, body=res.get_body(), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/api/{route}", invoke)
    return app


@dataclass
class FakeTwins:
    """State of the fake Digital Twins data plane."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    twins: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    fail_patches: int = 0
    """Answer this many PATCHes with 500 (then succeed)."""


def fake_digital_twins_app(state: FakeTwins) -> web.Application:
    def check(request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        state.auth.append(header)
        if not header.startswith("Bearer "):
            return web.json_response({"error": {"code": "Unauthorized", "message": "no bearer token"}}, status=401)
        return None

    async def get_model(request: web.Request) -> web.Response:
        denied = check(request)
        if denied:
            return denied
        model_id = unquote(request.match_info["id"])
        model = state.models.get(model_id)
        if model is None:
            return web.json_response({"error": {"code": "ModelNotFound", "message": model_id}}, status=404)
        return web.json_response({"id": model_id, "model": model, "decommissioned": False})

    async def get_twin(request: web.Request) -> web.Response:
        denied = check(request)
        if denied:
            return denied
        twin = state.twins.get(request.match_info["id"])
        if twin is None:
            return web.json_response({"error": {"code": "DigitalTwinNotFound", "message": "no twin"}}, status=404)
        return web.json_response(twin, headers={"ETag": 'W/"1"'})

    async def patch_twin(request: web.Request) -> web.Response:
        denied = check(request)
        if denied:
            return denied
        twin_id = request.match_info["id"]
        if twin_id not in state.twins:
            return web.json_response({"error": {"code": "DigitalTwinNotFound", "message": "no twin"}}, status=404)
        if state.fail_patches > 0:
            state.fail_patches -= 1
            return web.json_response({"error": {"code": "InternalServerError", "message": "boom"}}, status=500)
        ops = json.loads(await request.read())
        state.patches.append((twin_id, ops))
        for op in ops:
            state.twins[twin_id][op["path"].lstrip("/")] = op["value"]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/models/{id}", get_model)
    app.router.add_get("/digitaltwins/{id}", get_twin)
    app.router.add_patch("/digitaltwins/{id}", patch_twin)
    return app


def identity_app(requests: list[dict[str, str]]) -> web.Application:
    """App Service managed identity endpoint (api-version 2019-08-01)."""

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER_VALUE:
            return web.json_response({"error": "bad identity header"}, status=401)
        requests.append(dict(request.query))
        return web.json_response({
            "access_token": "mi-token", "expires_on": str(int(time.time()) + 3600),
            "resource": request.query.get("resource", ""), "token_type": "Bearer",
            "client_id": request.query.get("client_id", ""),
        })

    app = web.Application()
    app.router.add_get("/msi/token", token)
    return app


# -- A Cosmos DB gateway, enough for azure-cosmos' item CRUD and simple SQL ---------------------

_QUERY = re.compile(
    r"SELECT\s+(?:TOP\s+(?P<top>\d+)\s+)?\*\s+FROM\s+c"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+c\.(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?\s*$",
    re.IGNORECASE,
)
_CONDITION = re.compile(r"c\.(\w+)\s*(=|<=|>=|<|>)\s*(@\w+)")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


@dataclass
class FakeCosmos:
    """Items per (database, container): {partition value: {id: item}}; partition key path /device_id."""

    partition_path: str = "/device_id"
    items: dict[tuple[str, str], dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def all(self, db: str, coll: str) -> list[dict[str, Any]]:
        return [i for part in self.items.get((db, coll), {}).values() for i in part.values()]

    def query(self, db: str, coll: str, text: str, params: Mapping[str, Any], partition: str | None) -> list[Any]:
        match = _QUERY.match(text.strip())
        if match is None:
            raise ValueError(f"fake Cosmos cannot run {text!r}")
        rows = self.all(db, coll)
        if partition is not None:
            rows = [r for r in rows if r.get(self.partition_path[1:]) == partition]
        for cond in re.split(r"\s+AND\s+", match["where"] or "", flags=re.IGNORECASE):
            if not cond:
                continue
            c = _CONDITION.fullmatch(cond.strip())
            if c is None:
                raise ValueError(f"fake Cosmos cannot evaluate {cond!r}")
            field_name, op, param = c.groups()
            rows = [r for r in rows if field_name in r and _OPS[op](r[field_name], params[param])]
        if match["order"]:
            order = str(match["order"])
            rows.sort(key=lambda r: str(r.get(order, "")), reverse=(match["dir"] or "").upper() == "DESC")
        if match["top"]:
            rows = rows[: int(match["top"])]
        return rows


def fake_cosmos_app(state: FakeCosmos) -> web.Application:
    def partition_of(request: web.Request) -> str | None:
        raw = request.headers.get("x-ms-documentdb-partitionkey")
        return json.loads(raw)[0] if raw else None

    async def account(request: web.Request) -> web.Response:
        host = f"{request.scheme}://{request.host}/"
        location = [{"name": "local", "databaseAccountEndpoint": host}]
        return web.json_response({"id": "fake", "_self": "", "writableLocations": location,
                                  "readableLocations": location, "enableMultipleWriteLocations": False,
                                  "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                                  "queryEngineConfiguration": "{}"})

    async def container(request: web.Request) -> web.Response:
        db, coll = request.match_info["db"], request.match_info["coll"]
        return web.json_response({"id": coll, "_rid": f"{db}.{coll}", "_self": f"dbs/{db}/colls/{coll}/",
                                  "partitionKey": {"paths": [state.partition_path], "kind": "Hash", "version": 2}})

    async def docs(request: web.Request) -> web.Response:
        db, coll = request.match_info["db"], request.match_info["coll"]
        body = json.loads(await request.read())
        if request.headers.get("x-ms-documentdb-isquery"):
            state.requests.append(("query", body["query"]))
            params = {p["name"]: p["value"] for p in body.get("parameters", [])}
            rows = state.query(db, coll, body["query"], params, partition_of(request))
            return web.json_response({"_rid": "r", "Documents": rows, "_count": len(rows)})
        state.requests.append(("upsert" if request.headers.get("x-ms-documentdb-is-upsert") else "create", body["id"]))
        part = state.items.setdefault((db, coll), {}).setdefault(str(partition_of(request)), {})
        part[body["id"]] = body
        return web.json_response(body, status=201)

    async def delete(request: web.Request) -> web.Response:
        db, coll = request.match_info["db"], request.match_info["coll"]
        part = state.items.get((db, coll), {}).get(str(partition_of(request)), {})
        state.requests.append(("delete", request.match_info["id"]))
        if part.pop(request.match_info["id"], None) is None:
            return web.json_response({"code": "NotFound", "message": "no item"}, status=404)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", account)
    app.router.add_get("/dbs/{db}/colls/{coll}/", container)
    app.router.add_post("/dbs/{db}/colls/{coll}/docs/", docs)
    app.router.add_delete("/dbs/{db}/colls/{coll}/docs/{id}/", delete)
    return app


REGION = "eu-central-1"


def create_table(client: Callable[[str], Any], name: str) -> None:
    client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": str(StorageKey.PARTITION), "AttributeType": "S"},
                              {"AttributeName": str(StorageKey.SORT), "AttributeType": "S"}],
        KeySchema=[{"AttributeName": str(StorageKey.PARTITION), "KeyType": "HASH"},
                   {"AttributeName": str(StorageKey.SORT), "KeyType": "RANGE"}],
    )


def create_bucket(client: Callable[[str], Any], name: str) -> None:
    client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
