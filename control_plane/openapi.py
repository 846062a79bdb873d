"""The OpenAPI 3.1 document of the control plane's HTTP API, and `GET /api/openapi.json`.

Paths and methods come from the registered HTTP functions themselves (the blueprints' triggers,
read through the public `FunctionApp.get_functions()` of a throwaway app); this module only adds
per-route metadata (summary, bodies, responses), keyed by function name. A route without
metadata is left out on purpose, so the test that compares the document with the app's
registered routes catches it. The deployment body is the spec's own JSON Schema (the one in
`docs/spec.schema.json`), its definitions under `components/schemas`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.bundle import BUNDLE_TYPE, MAX_BUNDLE_BYTES
from shared.loaders import MAX_DOCUMENT_BYTES
from shared.spec import TWIN_NAME_MAX_LENGTH, TWIN_NAME_PATTERN, spec_components

bp = df.Blueprint()

ERRORS = {
    "description": "Problems, each with a JSON path",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
}
UNAUTHORIZED = {**ERRORS, "description": "No valid key (x-functions-key header, else the code query parameter)"}
TOO_LARGE = {**ERRORS, "description": f"The body is larger than {MAX_DOCUMENT_BYTES:,} bytes"}
NOT_JSON = {**ERRORS, "description": "The body is not application/json in UTF-8"}
SPEC_TOO_LARGE = {**ERRORS, "description": f"A JSON spec larger than {MAX_DOCUMENT_BYTES:,} bytes, or a bundle beyond "
                                           f"its limits ({MAX_BUNDLE_BYTES:,} bytes; see README, Bundles)"}
NOT_SPEC = {**ERRORS, "description": f"The body is neither application/json in UTF-8 nor {BUNDLE_TYPE}"}
ACCEPTED = {
    "description": "Started; Durable's check-status payload (Location header = statusQueryGetUri)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckStatus"}}},
}
SPEC_BODY = {
    "required": True,
    "description": f"The deployment spec (DESIGN.md section 4), at most {MAX_DOCUMENT_BYTES:,} bytes of UTF-8 JSON; "
                   f"or a bundle ({BUNDLE_TYPE}, at most {MAX_BUNDLE_BYTES:,} bytes): twin.json or the original "
                   "project's layout at its root, with the users' code folders beside it",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TwinSpec"}},
                BUNDLE_TYPE: {"schema": {"type": "string", "format": "binary", "contentMediaType": BUNDLE_TYPE}}},
}
BODY_ERRORS = {"400": ERRORS, "413": TOO_LARGE, "415": NOT_JSON}
SPEC_ERRORS = {"400": ERRORS, "413": SPEC_TOO_LARGE, "415": NOT_SPEC}


def _object(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


ROUTE_METADATA: dict[str, dict[str, Any]] = {
    "plan": {
        "summary": "The plan for a spec (resources, outputs, wires); no side effects",
        "requestBody": SPEC_BODY,
        "responses": {"200": _object("The plan document"), **SPEC_ERRORS},
    },
    "deployments_start": {
        "summary": "Validate a spec and start deploying it (resources no longer in the spec are deleted)",
        "parameters": [{"name": "prune", "in": "query", "required": False,
                        "schema": {"type": "boolean", "default": True},
                        "description": "false keeps recorded resources that the spec no longer has"}],
        "requestBody": SPEC_BODY,
        "responses": {"202": ACCEPTED, **SPEC_ERRORS, "409": ERRORS,
                      "503": {**ERRORS, "description": "A bundle was sent and the bundle store cannot keep it"}},
    },
    "deployments_get": {
        "summary": "A deployment's status, per-layer and per-resource progress, outputs (redacted), errors",
        "responses": {"200": _object("The deployment view"), "404": ERRORS},
    },
    "twins_get": {
        "summary": "The twin's recorded resources and outputs (secrets redacted)",
        "responses": {"200": _object("The twin view"), "400": ERRORS, "404": ERRORS},
    },
    "twins_delete": {
        "summary": "Destroy every recorded resource of the twin, in reverse dependency order",
        "responses": {"202": ACCEPTED, "400": ERRORS, "404": ERRORS, "409": ERRORS},
    },
    "tokens_rotate": {
        "summary": "Roll out a new inter-cloud token without rejecting in-flight traffic",
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"grace_seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
            }}},
        },
        "responses": {"202": ACCEPTED, **BODY_ERRORS, "404": ERRORS, "409": ERRORS},
    },
    "twins_refresh": {
        "summary": "Re-read the twin's producers and propagate outputs changed outside a deployment",
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"resources": {"type": "array", "items": {"type": "string"},
                                             "description": "only these producers (resource ids); default all"}},
            }}},
        },
        "responses": {"202": ACCEPTED, **BODY_ERRORS, "404": ERRORS},
    },
    "health": {
        "summary": "Whether the change loop's pieces are in place: events route, vault, ARM watch, identity",
        "description": "Always 200; `healthy` is false when a check fails, and each check gives a plain reason. "
                       "A failed check never drops a recorded change (operations apply the consumers behind).",
        "responses": {"200": {"description": "The checks", "content": {"application/json": {"schema": {
            "type": "object", "required": ["healthy", "checks"],
            "properties": {"healthy": {"type": "boolean"}, "checks": {"type": "array", "items": {
                "type": "object", "required": ["name", "ok", "reason"],
                "properties": {"name": {"type": "string", "enum": ["events", "vault", "watch", "identity"]},
                               "ok": {"type": "boolean"}, "reason": {"type": "string"}}}}}}}}}},
    },
    "openapi": {
        "summary": "This document",
        "responses": {"200": _object("OpenAPI 3.1 document")},
    },
}


def api_blueprints() -> list[Any]:
    """The blueprints whose HTTP functions make up the API."""
    from control_plane import api, deployments_api, health

    return [api.bp, deployments_api.bp, health.bp, bp]


def http_routes(blueprints: list[Any] | None = None) -> list[tuple[str, str, str]]:
    """(function name, METHOD, /api/route) for every HTTP function in the blueprints."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)  # throwaway: get_functions() once
    for blueprint in api_blueprints() if blueprints is None else blueprints:
        app.register_functions(blueprint)
    routes: list[tuple[str, str, str]] = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        if not function.is_http_function():
            continue
        route = getattr(trigger, "route", None) or function.get_function_name()
        methods = [getattr(m, "value", str(m)) for m in (getattr(trigger, "methods", None) or ["GET", "POST"])]
        routes.extend((str(function.get_function_name()), method.upper(), f"/api/{route}") for method in methods)
    return routes


TWIN_PARAMETER_SCHEMA = {"type": "string", "pattern": TWIN_NAME_PATTERN, "minLength": 1,
                         "maxLength": TWIN_NAME_MAX_LENGTH}


def document(blueprints: list[Any] | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for name, method, path in http_routes(blueprints):
        meta = ROUTE_METADATA.get(name)
        if meta is None:
            continue
        operation: dict[str, Any] = {"operationId": name, **meta}
        params = [seg[1:-1].rstrip("?") for seg in path.split("/") if seg.startswith("{")]
        if params or meta.get("parameters"):
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True,
                 "schema": TWIN_PARAMETER_SCHEMA if p == "twin" else {"type": "string", "minLength": 1}}
                for p in params
            ] + list(meta.get("parameters", []))
        operation["responses"] = {**operation["responses"], "401": UNAUTHORIZED}
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Twin control plane", "version": "1.0.0",
                 "description": "Deploys, wires, updates and destroys multi-cloud Digital Twins."},
        "servers": [{"url": "/"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
            "schemas": {
                "Errors": {
                    "type": "object", "required": ["errors"],
                    "properties": {"errors": {"type": "array", "items": {
                        "type": "object", "required": ["path", "message"],
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    }}},
                },
                **spec_components("#/components/schemas/{model}"),
                "CheckStatus": {
                    "type": "object", "required": ["id", "statusQueryGetUri"],
                    "properties": {k: {"type": "string"} for k in (
                        "id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri",
                        "restartPostUri", "suspendPostUri", "resumePostUri", "deploymentUri")},
                },
            },
        },
    }


@functools.cache
def document_text() -> str:
    return json.dumps(document())


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(document_text(), status_code=200, mimetype="application/json")
