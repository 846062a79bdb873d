"""Routes of the Key Vault secrets data plane, relative to `/keyvault/` (the first segment is the
vault's name). The SDK sends paths without a trailing slash; both forms are accepted."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.keyvault import responses as r
from sandbox.keyvault.models import RESOURCE_TYPE, KeyVaultBackend


def backend(ctx: SandboxContext) -> KeyVaultBackend:
    """The sandbox's Key Vault state (created by `install`)."""
    hooks = ctx.hooks_for(RESOURCE_TYPE)
    if not isinstance(hooks, KeyVaultBackend):
        install(ctx)
        hooks = ctx.hooks_for(RESOURCE_TYPE)
    assert isinstance(hooks, KeyVaultBackend)
    return hooks


def install(ctx: SandboxContext) -> None:
    """Register the ARM hooks for `Microsoft.KeyVault/vaults` (idempotent)."""
    if not isinstance(ctx.hooks_for(RESOURCE_TYPE), KeyVaultBackend):
        ctx.register_hooks(RESOURCE_TYPE, KeyVaultBackend(ctx))


def create_app(ctx: SandboxContext) -> web.Application:
    # Values are at most 25 KB; the limit leaves room for JSON escaping, tags and attributes.
    app = web.Application(client_max_size=1024 * 1024)
    app[r.BACKEND_KEY] = backend(ctx)
    app[r.CTX_KEY] = ctx
    vault = "/{vault}"
    secret = vault + "/secrets/{name}"
    deleted = vault + "/deletedsecrets/{name}"

    def add(method: str, path: str, handler: r.Route) -> None:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, path + "/", handler)

    add("GET", vault + "/secrets", r.list_secrets)
    add("PUT", secret, r.set_secret)
    add("GET", secret, r.get_secret)
    add("PATCH", secret, r.update_secret)
    add("DELETE", secret, r.delete_secret)
    add("GET", secret + "/versions", r.list_versions)
    add("GET", secret + "/{version}", r.get_secret)
    add("PATCH", secret + "/{version}", r.update_secret)
    add("GET", vault + "/deletedsecrets", r.list_deleted)
    add("GET", deleted, r.get_deleted)
    add("DELETE", deleted, r.purge_deleted)
    add("POST", deleted + "/recover", r.recover_deleted)
    return app
