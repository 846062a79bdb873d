"""The storage endpoint (`STORAGE_EMULATOR_HOST`): one catch-all in front of the emulator."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.http import FAULT_RESPONDER_KEY, REQUEST_CLASSIFIER_KEY
from sandbox.gcp.common import fault_response
from sandbox.gcp.storage import responses as r
from sandbox.gcp.storage.models import StorageBackend


def create_app(storage: StorageBackend) -> web.Application:
    # Objects up to 256 MB in one request (larger ones go resumable, chunk by chunk).
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[r.STORAGE_KEY] = storage
    app[REQUEST_CLASSIFIER_KEY] = r.classify
    app[FAULT_RESPONDER_KEY] = fault_response
    app.router.add_route("*", "/{tail:.*}", r.handle)
    return app
