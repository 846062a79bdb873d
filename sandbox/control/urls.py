"""Routes of the control endpoint (contract 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from sandbox.control.responses import ControlHandlers
from sandbox.core.http import sandbox_middleware

if TYPE_CHECKING:
    from sandbox.server import Sandbox


def create_app(sandbox: Sandbox) -> web.Application:
    h = ControlHandlers(sandbox)
    app = web.Application(middlewares=[sandbox_middleware(sandbox.ctx, "control")])
    app.router.add_get("/requests", h.requests)
    app.router.add_get("/resources", h.resources)
    app.router.add_get("/operations", h.operations)
    app.router.add_get("/endpoints", h.endpoints)
    app.router.add_get("/profile", h.get_profile)
    app.router.add_post("/reset", h.reset)
    app.router.add_post("/profile", h.set_profile)
    app.router.add_get("/hosts", h.list_hosts)
    app.router.add_post("/hosts", h.register_host)
    app.router.add_post("/aws/rules/{name}/run", h.run_rule)
    app.router.add_post("/gcp/jobs/{name:.+}/run", h.run_job)
    return app
