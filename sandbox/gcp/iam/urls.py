"""Routes of IAM v1 (service accounts) on the GCP REST endpoint."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.iam import responses as r


def add_routes(app: web.Application) -> None:
    accounts = "/v1/projects/{project}/serviceAccounts"
    app.router.add_post(accounts, r.create_service_account)
    app.router.add_get(accounts, r.list_service_accounts)
    app.router.add_get(accounts + "/{account}", r.get_service_account)
    app.router.add_delete(accounts + "/{account}", r.delete_service_account)
