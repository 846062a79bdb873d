"""Routes of Resource Manager v3 (and v1, which discovery clients may use) on the GCP REST endpoint."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.resourcemanager import responses as r


def add_routes(app: web.Application) -> None:
    for version in ("v1", "v3"):
        project = f"/{version}/projects/{{project:[^/:]+}}"
        app.router.add_get(project, r.get_project)
        app.router.add_post(project + ":getIamPolicy", r.get_iam_policy)
        app.router.add_post(project + ":setIamPolicy", r.set_iam_policy)
