"""Static bearer tokens for the sandbox (contract 5).

Azure clients authenticate with an unsigned JWT whose `oid` claim names the calling principal,
so the data planes can apply role assignments per principal, as Azure does. Nothing here
talks to a network or to MSAL.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken, AccessTokenInfo

DEFAULT_TENANT_ID = "11111111-1111-1111-1111-111111111111"
# Audiences ARM (and Kudu) accept: a token for another resource (e.g. Digital Twins) is refused.
ARM_AUDIENCES = frozenset(
    {
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    }
)
TOKEN_LIFETIME_SECONDS = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(
    principal_id: str, scope: str = "", tenant_id: str = DEFAULT_TENANT_ID, expires_on: int = 0
) -> str:
    """An unsigned JWT (`alg: none`) naming `principal_id` in `oid` (and `sub`)."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT"}
    audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": expires_on or now + TOKEN_LIFETIME_SECONDS,
        "oid": principal_id,
        "sub": principal_id,
        "tid": tenant_id,
    }
    return (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        + "."
    )


def token_claims(token: str) -> dict[str, Any] | None:
    """The claims of a sandbox token, or None if it is not a well-formed JWT with an `oid`."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("oid"), str) or not claims["oid"]:
        return None
    return claims


class SandboxCredential:
    """A TokenCredential / SupportsTokenInfo for the sandbox: any scope, always the same principal."""

    def __init__(self, principal_id: str, tenant_id: str = DEFAULT_TENANT_ID) -> None:
        if not principal_id:
            raise ValueError("principal_id must not be empty")
        self.principal_id = principal_id
        self.tenant_id = tenant_id

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        expires_on = int(time.time()) + TOKEN_LIFETIME_SECONDS
        scope = scopes[0] if scopes else ""
        return AccessToken(
            make_token(self.principal_id, scope, tenant_id or self.tenant_id, expires_on), expires_on
        )

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        expires_on = int(time.time()) + TOKEN_LIFETIME_SECONDS
        scope = scopes[0] if scopes else ""
        tenant = (options or {}).get("tenant_id") or self.tenant_id
        return AccessTokenInfo(make_token(self.principal_id, scope, tenant, expires_on), expires_on)

    def close(self) -> None:
        """Nothing to release; present so clients that close their credential can."""

    def __enter__(self) -> SandboxCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SandboxCredential(principal_id={self.principal_id!r})"


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def principal_from_request(request: web.Request) -> str | None:
    """The `oid` of the request's bearer token; None if it is missing, garbled or expired."""
    token = bearer_token(request)
    if token is None:
        return None
    claims = token_claims(token)
    if claims is None:
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return None
    return str(claims["oid"])


def audience_from_request(request: web.Request) -> str | None:
    """The `aud` claim of the request's bearer token (None without a readable token)."""
    token = bearer_token(request)
    claims = token_claims(token) if token else None
    if claims is None:
        return None
    aud = claims.get("aud")
    return aud if isinstance(aud, str) else ""


def wrong_audience_response(audience: str) -> web.Response:
    """ARM's 401 for a token issued for another resource."""
    body = {
        "error": {
            "code": "InvalidAuthenticationTokenAudience",
            "message": f"The access token has been obtained for wrong audience or resource '{audience}'. It should "
            "exactly match with one of the allowed audiences 'https://management.core.windows.net/', "
            "'https://management.azure.com/'.",
        }
    }
    return web.Response(
        body=json.dumps(body).encode(),
        status=401,
        content_type="application/json",
        headers={
            "WWW-Authenticate": 'Bearer error="invalid_token", error_description="The audience is invalid"'
        },
    )


def unauthorized_response(tenant_id: str = DEFAULT_TENANT_ID, service: str = "arm") -> web.Response:
    """ARM's 401 for a missing or invalid bearer token (the SDK raises ClientAuthenticationError)."""
    if service == "arm":
        code, message = (
            "InvalidAuthenticationToken",
            "The access token is invalid: the 'Authorization' header is missing, not a Bearer token, or the token cannot be read.",
        )
    else:
        code, message = ("Unauthorized", "The request is not authorized: missing or invalid bearer token.")
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    # No `claims=` in the challenge, so azure-core's challenge policies do not retry.
    challenge = (
        f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant_id}", '
        'error="invalid_token", error_description="The access token is missing or invalid"'
    )
    return web.Response(
        body=body, status=401, content_type="application/json", headers={"WWW-Authenticate": challenge}
    )
