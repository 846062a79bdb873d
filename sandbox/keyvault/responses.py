"""HTTP side of the Key Vault secrets data plane: vault lookup, challenge auth, RBAC, paging.

Every handler resolves the vault from the first path segment, then authenticates as Key Vault
does: a request without a usable bearer token gets 401 with the challenge azure-keyvault's
`ChallengeAuthPolicy` parses (`authorization=` the tenant's authority, `resource=` the vault
audience); the SDK then fetches a token for `https://vault.azure.net/.default` and retries.
A token for another audience or tenant is refused with 401 too. With the vault's
`enableRbacAuthorization`, the caller's `oid` needs a Key Vault secrets role at the vault's
scope or above (403 otherwise); without it any valid token may read and write.

Secret values only travel in request and response bodies, which the sandbox never logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.core.auth import bearer_token, token_claims
from sandbox.core.context import SandboxContext
from sandbox.core.http import label_request
from sandbox.keyvault.models import (
    AUDIENCES,
    DEFAULT_PAGE_SIZE,
    GET_ROLES,
    MAX_PAGE_SIZE,
    METADATA_ROLES,
    WRITE_ROLES,
    KeyVaultBackend,
    KeyVaultError,
    Vault,
)

BACKEND_KEY: web.AppKey[KeyVaultBackend] = web.AppKey("keyvault_backend", KeyVaultBackend)
CTX_KEY: web.AppKey[SandboxContext] = web.AppKey("keyvault_ctx", SandboxContext)

Handler = Callable[[web.Request, Vault], Awaitable[web.StreamResponse]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Access levels of the operations (see models.WRITE_ROLES etc.).
WRITE, GET, METADATA = "write", "get", "metadata"
_ROLES = {WRITE: WRITE_ROLES, GET: GET_ROLES, METADATA: METADATA_ROLES}


def error_response(err: KeyVaultError) -> web.Response:
    return web.Response(
        body=json.dumps(err.body()).encode(),
        status=err.status,
        content_type="application/json",
        headers=err.headers,
    )


def json_ok(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def challenge_error(tenant_id: str, code: str, message: str) -> KeyVaultError:
    """Key Vault's 401: the WWW-Authenticate challenge tells the SDK which authority and resource."""
    header = (
        f'Bearer authorization="https://login.microsoftonline.com/{tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    return KeyVaultError(401, code, message, headers={"WWW-Authenticate": header})


def _authenticate(request: web.Request, vault: Vault, ctx: SandboxContext) -> str:
    """The caller's `oid`, or a 401 `KeyVaultError`. Never echoes the token."""
    tenant = vault.settings.tenant_id or ctx.tenant_id
    token = bearer_token(request)
    if token is None:
        raise challenge_error(tenant, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
    claims = token_claims(token)
    if claims is None:
        raise challenge_error(tenant, "Unauthorized", "AKV10000: Request is missing a valid Bearer token.")
    aud = claims.get("aud")
    if aud not in AUDIENCES:
        shown = aud if isinstance(aud, str) else ""
        raise challenge_error(
            tenant,
            "Unauthorized",
            f"AKV10022: Invalid audience. Expected https://vault.azure.net, found: {shown[:200]}.",
        )
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        raise challenge_error(tenant, "Unauthorized", "AKV10013: The access token has expired.")
    tid = claims.get("tid")
    if (
        vault.settings.tenant_id
        and isinstance(tid, str)
        and tid
        and tid.lower() != vault.settings.tenant_id.lower()
    ):
        raise challenge_error(
            tenant,
            "Unauthorized",
            f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found "
            f"https://sts.windows.net/{tid[:64]}/.",
        )
    return str(claims["oid"])


def _authorize(
    request: web.Request, vault: Vault, ctx: SandboxContext, principal: str, access: str, action: str
) -> None:
    if not vault.settings.rbac:
        return
    if ctx.role_assignments.allows(principal, vault.resource_id, set(_ROLES[access])):
        return
    raise KeyVaultError(
        403,
        "Forbidden",
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role "
        "definitions were changed recently, please observe propagation time.\r\n"
        f"Caller: oid={principal}\r\nAction: 'Microsoft.KeyVault/vaults/{action}'\r\n"
        f"Resource: '{vault.resource_id.lower()}'\r\nAssignment: (not found)\r\nVault: {vault.name}",
        inner="ForbiddenByRbac",
    )


def kv_handler(access: str, action: str, operation: str) -> Callable[[Handler], Route]:
    """Wrap a handler with vault lookup, authentication, RBAC, api-version and error shaping."""

    def wrap(fn: Handler) -> Route:
        async def handler(request: web.Request) -> web.StreamResponse:
            label_request(request, operation=f"keyvault:{operation}")
            backend = request.app[BACKEND_KEY]
            ctx = request.app[CTX_KEY]
            name = request.match_info["vault"]
            vault = backend.vault(name)
            try:
                if vault is None:
                    raise KeyVaultError(
                        404,
                        "VaultNotFound",
                        f"No Key Vault named '{name[:100]}' is served here: it was never created through ARM or has "
                        "been deleted (read the vault's properties.vaultUri again).",
                    )
                try:
                    principal = _authenticate(request, vault, ctx)
                except KeyVaultError:
                    # The SDK's challenge probe (its first request, without token or body): it
                    # changes nothing, so it does not count as a mutating call in the request log.
                    label_request(request, mutating=False)
                    raise
                _authorize(request, vault, ctx, principal, access, action)
                if not request.query.get("api-version"):
                    raise KeyVaultError(400, "BadParameter", "The 'api-version' query parameter is missing.")
                return await fn(request, vault)
            except KeyVaultError as err:
                return error_response(err)

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise KeyVaultError(400, "BadParameter", "The request body is empty; a JSON object is required.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        # Not the parser's message: it quotes the body, which may hold a secret value.
        raise KeyVaultError(400, "BadParameter", "The request body is not valid JSON.") from None


def _page(request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """`{value, nextLink}`: `maxresults` (1-25) per page, `$skiptoken` an opaque offset."""
    raw_size = request.query.get("maxresults")
    size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            raise KeyVaultError(
                400,
                "BadParameter",
                f"Invalid maxresults value '{raw_size[:20]}': it must be between 1 and {MAX_PAGE_SIZE}.",
            )
        size = int(raw_size)
    offset = 0
    token = request.query.get("$skiptoken")
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise KeyVaultError(400, "BadParameter", "The $skiptoken is invalid.") from None
    next_link = None
    if offset + size < len(items):
        ctx = request.app[CTX_KEY]
        params = {
            "api-version": request.query.get("api-version", ""),
            "$skiptoken": base64.urlsafe_b64encode(str(offset + size).encode()).decode(),
            "maxresults": str(size),
        }
        next_link = f"{ctx.azure_base_url.rstrip('/')}{request.path}?{urlencode(params)}"
    return {"value": items[offset : offset + size], "nextLink": next_link}


# --- secrets -------------------------------------------------------------------------------------


@kv_handler(WRITE, "secrets/setSecret/action", "SetSecret")
async def set_secret(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(vault.set_secret(request.match_info["name"], await read_json(request)))


@kv_handler(GET, "secrets/getSecret/action", "GetSecret")
async def get_secret(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(vault.get_secret(request.match_info["name"], request.match_info.get("version")))


@kv_handler(WRITE, "secrets/update/action", "UpdateSecret")
async def update_secret(request: web.Request, vault: Vault) -> web.StreamResponse:
    body = await read_json(request)
    return json_ok(vault.update_secret(request.match_info["name"], request.match_info.get("version"), body))


@kv_handler(METADATA, "secrets/readMetadata/action", "GetSecrets")
async def list_secrets(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(_page(request, vault.list_secrets()))


@kv_handler(METADATA, "secrets/readMetadata/action", "GetSecretVersions")
async def list_versions(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(_page(request, vault.list_versions(request.match_info["name"])))


@kv_handler(WRITE, "secrets/delete", "DeleteSecret")
async def delete_secret(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(vault.delete_secret(request.match_info["name"]))


# --- deleted secrets ---------------------------------------------------------------------------


@kv_handler(METADATA, "secrets/readMetadata/action", "GetDeletedSecret")
async def get_deleted(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(vault.get_deleted(request.match_info["name"]))


@kv_handler(METADATA, "secrets/readMetadata/action", "GetDeletedSecrets")
async def list_deleted(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(_page(request, vault.list_deleted()))


@kv_handler(WRITE, "secrets/purge/action", "PurgeDeletedSecret")
async def purge_deleted(request: web.Request, vault: Vault) -> web.StreamResponse:
    vault.purge(request.match_info["name"])
    return web.Response(status=204)


@kv_handler(WRITE, "secrets/recover/action", "RecoverDeletedSecret")
async def recover_deleted(request: web.Request, vault: Vault) -> web.StreamResponse:
    return json_ok(vault.recover(request.match_info["name"]))
