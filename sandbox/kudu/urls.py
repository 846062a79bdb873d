"""Routes of the Kudu sub-app, mounted at `/kudu` (so the SCM host of a site is `127.0.0.1:PORT/kudu/<site>`)."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.kudu.responses import KuduHandlers


def create_app(ctx: SandboxContext) -> web.Application:
    h = KuduHandlers(ctx)
    # Packages can be large (the 1 GB platform limit).
    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/{site}/api/zipdeploy", h.zipdeploy)
    app.router.add_post("/{site}/api/publish", h.publish)
    app.router.add_get("/{site}/api/deployments", h.deployments)
    app.router.add_get("/{site}/api/deployments/{id}", h.deployment)
    app.router.add_get("/{site}/api/deployments/{id}/log", h.deployment_log)
    return app
