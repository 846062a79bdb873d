"""The OpenAPI 3.1 document of the control plane's HTTP API.

Paths and methods come from the registered HTTP functions themselves (the blueprints'
triggers); this module only adds per-route metadata (summary, bodies, responses), keyed by
function name. A route without metadata is left out on purpose, so the test that compares the
document with the app's registered routes catches it.
"""

from __future__ import annotations

from typing import Any

ERRORS = {
    "description": "Problems, each with a JSON path",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
}
ACCEPTED = {
    "description": "Started; Durable's check-status payload (Location header = statusQueryGetUri)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckStatus"}}},
}
SPEC_BODY = {
    "required": True,
    "description": "The deployment spec (DESIGN.md section 4)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _object(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


ROUTE_METADATA: dict[str, dict[str, Any]] = {
    "plan": {
        "summary": "The plan for a spec (resources, outputs, wires); no side effects",
        "requestBody": SPEC_BODY,
        "responses": {"200": _object("The plan document"), "400": ERRORS},
    },
    "deployments_start": {
        "summary": "Validate a spec and start deploying it (resources no longer in the spec are deleted)",
        "parameters": [{"name": "prune", "in": "query", "required": False,
                        "schema": {"type": "boolean", "default": True},
                        "description": "false keeps recorded resources that the spec no longer has"}],
        "requestBody": SPEC_BODY,
        "responses": {"202": ACCEPTED, "400": ERRORS, "409": ERRORS},
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
        "responses": {"202": ACCEPTED, "400": ERRORS, "404": ERRORS, "409": ERRORS},
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
        "responses": {"202": ACCEPTED, "400": ERRORS, "404": ERRORS},
    },
    "openapi": {
        "summary": "This document",
        "responses": {"200": _object("OpenAPI 3.1 document")},
    },
}


def http_routes(blueprints: list[Any] | None = None) -> list[tuple[str, str, str]]:
    """(function name, METHOD, /api/route) for every HTTP function in the API blueprints."""
    if blueprints is None:
        from control_plane import api, deployments_api

        blueprints = [api.bp, deployments_api.bp]
    routes: list[tuple[str, str, str]] = []
    for bp in blueprints:
        for builder in bp._function_builders:
            function = builder._function
            trigger = function.get_trigger()
            if type(trigger).__name__ != "HttpTrigger":
                continue
            route = trigger.route or function.get_function_name()
            methods = [getattr(m, "value", str(m)) for m in (trigger.methods or ["GET", "POST"])]
            for method in methods:
                routes.append((function.get_function_name(), method.upper(), f"/api/{route}"))
    return routes


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
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ] + list(meta.get("parameters", []))
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
                "CheckStatus": {
                    "type": "object", "required": ["id", "statusQueryGetUri"],
                    "properties": {k: {"type": "string"} for k in (
                        "id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri",
                        "restartPostUri", "suspendPostUri", "resumePostUri", "deploymentUri")},
                },
            },
        },
    }
