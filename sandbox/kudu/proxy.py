"""`https://127.0.0.1:PORT/sites/<site>/...` (a site's `defaultHostName`): forwarded to the local
Function host registered for that site through the control endpoint (`POST /hosts`)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sandbox.arm.models import arm_backend
from sandbox.core.context import SandboxContext
from sandbox.core.http import json_response

HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("sites_proxy_session", aiohttp.ClientSession)


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application(client_max_size=1024**3)

    async def on_startup(app: web.Application) -> None:
        app[SESSION_KEY] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=230), auto_decompress=False
        )

    async def on_cleanup(app: web.Application) -> None:
        await app[SESSION_KEY].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        site_name = request.match_info["site"]
        found = arm_backend(ctx).find_site_by_name(site_name)
        if found is None:
            return json_response(
                {"error": {"code": "SiteNotFound", "message": f"No Function App named '{site_name}'."}}, 404
            )
        host = ctx.function_hosts.get(found[0].rid.key)
        if host is None:
            return json_response(
                {
                    "error": {
                        "code": "FunctionHostNotRunning",
                        "message": f"No local Function host is registered for site '{site_name}' (control endpoint POST /hosts).",
                    }
                },
                503,
            )
        url = f"{host.base_url}/{request.match_info['tail']}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        # So the local host can build public URLs (e.g. Durable's statusQueryGetUri) under this prefix.
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Prefix"] = f"/sites/{site_name}"
        try:
            async with app[SESSION_KEY].request(
                request.method, url, params=request.query, headers=headers, data=await request.read()
            ) as upstream:
                body = await upstream.read()
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                if "Content-Encoding" in upstream.headers:
                    out_headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
                return web.Response(status=upstream.status, body=body, headers=out_headers)
        except aiohttp.ClientError as exc:
            return json_response(
                {
                    "error": {
                        "code": "FunctionHostUnreachable",
                        "message": f"The Function host of site '{site_name}' at {host.base_url} did not answer: {type(exc).__name__}.",
                    }
                },
                502,
            )

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{site}/{tail:.*}", forward)
    return app
