"""The App Service managed-identity endpoint for Function Apps run by the sandbox.

On App Service a site's code gets `IDENTITY_ENDPOINT` (a local HTTP URL) and `IDENTITY_HEADER`
(a per-process secret); `ManagedIdentityCredential` sends `GET {endpoint}?api-version=2019-08-01
&resource=...&client_id=...` with `X-IDENTITY-HEADER`. Here the answer is a sandbox token
(`sandbox.core.auth.make_token`) whose `oid` is the principal of the identity the site really
holds in the ARM store: the user-assigned identity with that `client_id`, or the system-assigned
one when no id is given. The data planes then apply that principal's role assignments.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.core.auth import TOKEN_LIFETIME_SECONDS, make_token

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"


class IdentityError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resolve_principal(site_body: dict[str, Any], query: dict[str, str]) -> tuple[str, str]:
    """(principal id, client id) of the identity a token request names, from the site's ARM body."""
    identity = site_body.get("identity") if isinstance(site_body.get("identity"), dict) else {}
    assert isinstance(identity, dict)
    assigned = identity.get("userAssignedIdentities")
    user_assigned: dict[str, Any] = assigned if isinstance(assigned, dict) else {}
    client_id = query.get("client_id") or ""
    resource_id = query.get("mi_res_id") or query.get("msi_res_id") or query.get("resource_id") or ""
    object_id = query.get("object_id") or query.get("principal_id") or ""
    if client_id or resource_id or object_id:
        for rid, info in user_assigned.items():
            if not isinstance(info, dict):
                continue
            if (
                (client_id and str(info.get("clientId", "")).lower() == client_id.lower())
                or (resource_id and rid.lower() == resource_id.lower())
                or (object_id and str(info.get("principalId", "")).lower() == object_id.lower())
            ):
                return str(info.get("principalId")), str(info.get("clientId", ""))
        wanted = client_id or resource_id or object_id
        raise IdentityError(
            400, f"No user-assigned identity matching {wanted!r} is assigned to this Function App."
        )
    principal = identity.get("principalId")
    if isinstance(principal, str) and principal:
        return principal, ""
    raise IdentityError(
        400,
        "This Function App has no system-assigned identity; pass the client_id of a user-assigned identity.",
    )


class IdentityEndpoint:
    """One HTTP route serving every site; each running site process gets its own header secret."""

    def __init__(self, site_body: Callable[[str], dict[str, Any] | None], tenant_id: str) -> None:
        self._site_body = site_body  # site key -> its ARM body (None once deleted)
        self._tenant_id = tenant_id
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}  # secret -> site key

    def issue_secret(self, site_key: str) -> str:
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._secrets[secret] = site_key
        return secret

    def revoke_secret(self, secret: str) -> None:
        with self._lock:
            self._secrets.pop(secret, None)

    def _site_for(self, given: str) -> str | None:
        with self._lock:
            for secret, site_key in self._secrets.items():
                if hmac.compare_digest(secret.encode(), given.encode()):
                    return site_key
        return None

    async def token(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-IDENTITY-HEADER", "")
        site_key = self._site_for(given) if given else None
        if site_key is None:
            return _error(401, "The X-IDENTITY-HEADER header is missing or not valid for this endpoint.")
        if request.query.get("api-version") != API_VERSION:
            return _error(400, f"api-version must be {API_VERSION}.")
        resource = request.query.get("resource", "")
        if not resource:
            return _error(400, "The 'resource' query parameter is required.")
        body = self._site_body(site_key)
        if body is None:
            return _error(404, "The Function App of this identity endpoint no longer exists.")
        try:
            principal, client_id = resolve_principal(body, dict(request.query))
        except IdentityError as exc:
            return _error(exc.status, exc.message)
        expires_on = int(time.time()) + TOKEN_LIFETIME_SECONDS
        return web.json_response(
            {
                "access_token": make_token(principal, resource, self._tenant_id, expires_on),
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    def create_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(TOKEN_PATH, self.token)
        return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": "invalid_request", "error_description": message}, status=status)
