"""`GcpSandbox`: the Google Cloud side of the sandbox on 127.0.0.1, on an event loop of its own.

- one REST endpoint (`api_endpoint`) for Cloud Functions v2, Cloud Run service IAM, Cloud Scheduler,
  IAM v1, Resource Manager v1/v3, Pub/Sub v1 and the Firestore Admin API, as moto serves all of AWS
  on one port;
- one gRPC endpoint for Pub/Sub, Firestore and IAM admin (`pubsub_emulator_host`,
  `firestore_emulator_host`);
- the storage endpoint (`storage_emulator_host`): gcp-storage-emulator behind the sandbox's fixes;
- a front door per deployed function (`serviceConfig.uri`), its revisions run under functions-framework.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import REQUEST_CLASSIFIER_KEY, sandbox_middleware
from sandbox.gcp.backends import BACKENDS_KEY, GcpBackends
from sandbox.gcp.common import (
    DEFAULT_REGION,
    PROJECT_ID,
    PROJECT_NUMBER,
    GoogleError,
    api,
    classify,
    fault_response,
)
from sandbox.gcp.iam.models import IamBackend

START_TIMEOUT_SECONDS = 30.0


class GcpSandbox:
    def __init__(self, ctx: SandboxContext, state_dir: Path | None = None) -> None:
        self.ctx = ctx
        self.state_dir = state_dir or ctx.state_dir
        self.b = GcpBackends(ctx, IamBackend(ctx.faults))
        self.endpoints: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._grpc: Any = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        from sandbox.gcp.grpc_server import GrpcEndpoint
        from sandbox.gcp.storage.models import StorageBackend

        loop = asyncio.new_event_loop()
        self._loop = self.b.loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="sandbox-gcp", daemon=True)
        self._thread.start()
        try:
            self.b.storage = StorageBackend()
            self.b.storage.start()
            self._grpc = GrpcEndpoint(self.b)
            grpc_host = self._grpc.start()
            self.call(self._start())
        except BaseException:
            self.stop()
            raise
        self.endpoints = {
            "project_id": PROJECT_ID,
            "project_number": PROJECT_NUMBER,
            "region": DEFAULT_REGION,
            "api_endpoint": self.b.api_endpoint,
            "pubsub_emulator_host": grpc_host,
            "firestore_emulator_host": grpc_host,
            "grpc_host": grpc_host,
            "storage_emulator_host": self.b.storage_endpoint,
        }
        return self.endpoints

    async def _start(self) -> None:
        from sandbox.gcp.firestore.models import FirestoreBackend
        from sandbox.gcp.functions.models import FunctionsBackend
        from sandbox.gcp.pubsub.models import PubSubBackend
        from sandbox.gcp.scheduler.models import SchedulerBackend
        from sandbox.gcp.storage import urls as storage_urls
        from sandbox.runtime.gcp_functions import GcpFunctionRunner

        loop = asyncio.get_running_loop()
        b = self.b
        b.pubsub = PubSubBackend(self.ctx.faults, loop)
        b.firestore = FirestoreBackend()
        b.scheduler = SchedulerBackend(b)
        runner = GcpFunctionRunner(self.state_dir / "gcp" / "functions")
        b.functions = FunctionsBackend(b, runner, b.storage.read_object, self.function_environment)
        b.api_endpoint = await self._serve(self.build_rest_app())
        storage_app = storage_urls.create_app(b.storage)
        storage_app.middlewares.append(sandbox_middleware(self.ctx, "gcp", fault_responder=fault_response))
        b.storage_endpoint = b.storage.endpoint = await self._serve(storage_app)
        b.scheduler.start()

    def build_rest_app(self) -> web.Application:
        from sandbox.gcp.firestore import urls as firestore_urls
        from sandbox.gcp.functions import urls as functions_urls
        from sandbox.gcp.iam import urls as iam_urls
        from sandbox.gcp.pubsub import urls as pubsub_urls
        from sandbox.gcp.resourcemanager import urls as crm_urls
        from sandbox.gcp.scheduler import urls as scheduler_urls

        app = web.Application(middlewares=[sandbox_middleware(self.ctx, "gcp", fault_responder=fault_response)],
                              client_max_size=16 * 1024 * 1024)
        app[BACKENDS_KEY] = self.b
        app[REQUEST_CLASSIFIER_KEY] = classify
        for module in (functions_urls, scheduler_urls, iam_urls, crm_urls, pubsub_urls, firestore_urls):
            module.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", _unknown)
        return app

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    def function_environment(self) -> dict[str, str]:
        """What a deployed function's process gets so its own Google clients reach the sandbox, and
        its HTTPS calls to the other clouds' sandbox endpoints trust the sandbox's CA (which stands
        for the public CAs a function on Google Cloud trusts), as the Lambdas' do."""
        env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT_ID,
            "GCLOUD_PROJECT": PROJECT_ID,
            "FIRESTORE_EMULATOR_HOST": self.b.grpc_host,
            "PUBSUB_EMULATOR_HOST": self.b.grpc_host,
            "STORAGE_EMULATOR_HOST": self.b.storage_endpoint,
        }
        ca = self.ctx.state_dir / "ca.pem"
        if ca.is_file():
            env.update({"SSL_CERT_FILE": str(ca), "REQUESTS_CA_BUNDLE": str(ca)})
        return env

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            try:
                self.call(self._close(), timeout=60)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()
        if self._grpc is not None:
            self._grpc.stop()
            self._grpc = None
        storage = getattr(self.b, "storage", None)
        if storage is not None:
            storage.stop()
        self._loop = self._thread = None

    async def _close(self) -> None:
        for name in ("scheduler", "functions", "pubsub", "storage"):
            part = getattr(self.b, name, None)
            if part is not None:
                await part.close()
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    def call(self, coro: Any, timeout: float = START_TIMEOUT_SECONDS) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the GCP sandbox is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- control ----------------------------------------------------------------------------------

    def reset(self) -> None:
        self.call(self.b.functions.reset(), timeout=60)
        self.b.scheduler.reset()
        self.b.pubsub.reset()
        self.b.firestore.reset()
        self.b.iam.reset()
        self.b.operations.reset()
        self.b.storage.reset()

    def list_resources(self) -> list[dict[str, str]]:
        buckets = []
        server = getattr(self.b.storage, "_server", None)
        if server is not None:
            buckets = [{"type": "storage.bucket", "name": str(name),
                        "storageClass": str(bucket.get("storageClass", ""))}
                       for name, bucket in sorted(server._storage.buckets.items())]
        return (self.b.functions.resources() + self.b.scheduler.resources() + self.b.pubsub.resources()
                + self.b.firestore.resources() + self.b.iam.resources() + buckets)

    def run_job(self, name: str, timeout: float = 900.0, moment: datetime | None = None) -> dict[str, Any]:
        """Run Cloud Scheduler job `name` (full name or job id) now and wait for the outcome; `moment`
        is the scheduled time the attempt carries (default: now). KeyError if unknown;
        `scheduler.models.JobPaused` if paused."""
        full = name if name.startswith("projects/") else next(
            (j["name"] for j in self.b.scheduler.list_jobs(f"projects/{PROJECT_ID}/locations/{DEFAULT_REGION}")
             if j["name"].endswith("/jobs/" + name)), None)
        if full is None:
            full = next((n["name"] for n in self.b.scheduler.resources() if n["name"].endswith("/jobs/" + name)), None)
        if full is None:
            raise KeyError(name)
        try:
            self.b.scheduler.get(full)
        except GoogleError as exc:
            raise KeyError(name) from exc
        result: dict[str, Any] = self.call(self.b.scheduler.run_now(full, moment), timeout)
        return result


@api("gcp:Unknown", mutating=False)
async def _unknown(request: web.Request) -> web.Response:
    raise GoogleError("NOT_FOUND", f"The requested URL {request.path} was not found on this server "
                      "(not an API the sandbox serves).")
