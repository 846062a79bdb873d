"""Routes of Cloud Functions v2 (and Cloud Run service IAM) on the GCP REST endpoint."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.functions import responses as r


def add_routes(app: web.Application) -> None:
    location = "/v2/projects/{project}/locations/{location}"
    functions = location + "/functions"
    function = functions + "/{function:[^/:]+}"
    app.router.add_post(functions + ":generateUploadUrl", r.generate_upload_url)
    app.router.add_post(functions, r.create_function)
    app.router.add_get(functions, r.list_functions)
    app.router.add_get(function, r.get_function)
    app.router.add_patch(function, r.update_function)
    app.router.add_delete(function, r.delete_function)
    app.router.add_get(function + ":getIamPolicy", r.get_iam_policy)
    app.router.add_post(function + ":setIamPolicy", r.set_iam_policy)
    app.router.add_get(location + "/operations/{operation}", r.get_operation)
    service = location + "/services/{service:[^/:]+}"
    app.router.add_get(service + ":getIamPolicy", r.get_service_iam_policy)
    app.router.add_post(service + ":setIamPolicy", r.set_service_iam_policy)
