"""Routes of the Firestore Admin API v1 on the GCP REST endpoint (the data plane is gRPC: `grpc.py`)."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.firestore import responses as r


def add_routes(app: web.Application) -> None:
    databases = "/v1/projects/{project}/databases"
    database = databases + "/{database:[^/:]+}"
    group = database + "/collectionGroups/{group}"
    app.router.add_post(databases, r.create_database)
    app.router.add_get(databases, r.list_databases)
    app.router.add_get(database, r.get_database)
    app.router.add_delete(database, r.delete_database)
    app.router.add_post(group + "/indexes", r.create_index)
    app.router.add_get(group + "/indexes", r.list_indexes)
    app.router.add_get(group + "/indexes/{index}", r.get_index)
    app.router.add_delete(group + "/indexes/{index}", r.delete_index)
    app.router.add_patch(group + "/fields/{field}", r.update_field)
    app.router.add_get(group + "/fields/{field}", r.get_field)
    app.router.add_get(database + "/operations/{operation}", r.get_operation)
