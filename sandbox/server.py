"""The sandbox as one object: the Azure HTTPS server, the control endpoint, AWS, GCP and Blob (contract 6).

All Azure services share one HTTPS aiohttp server on 127.0.0.1 (a local CA from the state dir):
ARM at the root, Digital Twins under `/digitaltwins-instances/`, Event Grid under `/eventgrid/`,
Kudu under `/kudu/`, Cosmos DB under `/cosmos/`, IoT Hub under `/iothub/`, Managed Grafana under
`/grafana/`, and the Function-host proxy under `/sites/`. The control endpoint is plain HTTP
on its own port. Both run on one asyncio loop in a background thread, so tests can use the
blocking SDK clients from the main thread. AWS (`sandbox.aws`) and Google Cloud (`sandbox.gcp`) run
on loops of their own, plain HTTP (and gRPC) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import SandboxTls, sandbox_middleware
from sandbox.core.profiles import PROFILES, Faults

# The principal the deployer (and tests) act as, named in endpoints.json.
DEPLOYER_PRINCIPAL_ID = "d3b1e7a0-5c1a-4f5e-9a57-0c0ffee00001"

# (module, URL prefix) of each Azure data-plane service mounted on the shared HTTPS server.
# Each module has `create_app(ctx)`, `install(ctx)` and `reset(ctx)`.
AZURE_SERVICES: tuple[tuple[str, str], ...] = (
    ("sandbox.digitaltwins", "/digitaltwins-instances"),
    ("sandbox.eventgrid", "/eventgrid"),
    ("sandbox.kudu", "/kudu"),
    ("sandbox.cosmos", "/cosmos"),
    ("sandbox.iothub", "/iothub"),
    ("sandbox.grafana", "/grafana"),
    ("sandbox.keyvault", "/keyvault"),
)

START_TIMEOUT_SECONDS = 60.0


class Sandbox:
    """Start with `.start()` (or `with Sandbox(...) as sb:`); `.endpoints` is endpoints.json's content."""

    def __init__(
        self,
        state_dir: str | Path,
        profile: str = "instant",
        seed: int = 0,
        with_blob: bool = True,
        with_aws: bool = True,
        with_function_apps: bool = True,
        with_gcp: bool = True,
        record_exchanges: bool = False,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
        self.state_dir = Path(state_dir).resolve()
        self.with_blob = with_blob
        self.with_aws = with_aws
        self.with_function_apps = with_function_apps
        self.with_gcp = with_gcp
        self.ctx = SandboxContext(
            state_dir=self.state_dir, faults=Faults(profile=PROFILES[profile], seed=seed)
        )
        # Whole ARM / Digital Twins exchanges for tests/conformance (bodies hold secrets: off by default).
        self.ctx.exchanges.enabled = record_exchanges
        self.endpoints: dict[str, Any] = {}
        self.aws: Any = None
        self.blob: Any = None
        self.gcp: Any = None
        # Runs each Function App's deployed package in its own local host process.
        self.function_apps: Any = None
        self._tls: SandboxTls | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        if self._started:
            return self.endpoints
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._tls = SandboxTls(self.state_dir)
        try:
            self._start_loop()
            azure_url, control_url = self._call(self._start_servers())
            if self.with_function_apps:
                from sandbox.runtime import FunctionAppRuntime

                self.function_apps = FunctionAppRuntime(self.ctx)
                self.function_apps.start()
            self.endpoints = {
                "azure": {
                    "arm": azure_url,
                    "subscription_id": self.ctx.subscription_id,
                    "tenant_id": self.ctx.tenant_id,
                    "ca_file": str(self._tls.ca_file),
                    "deployer_principal_id": DEPLOYER_PRINCIPAL_ID,
                },
                "control": control_url,
            }
            if self.with_aws:
                from sandbox.aws import AwsSandbox  # moto is heavy: imported only when used

                self.aws = AwsSandbox(self.ctx)
                self.endpoints["aws"] = self.aws.start()
            if self.with_gcp:
                from sandbox.gcp import GcpSandbox

                self.gcp = GcpSandbox(self.ctx)
                self.endpoints["gcp"] = self.gcp.start()
            if self.with_blob:
                from sandbox.blob import Azurite

                self.blob = Azurite(self.ctx, self.state_dir)
                self.endpoints["blob"] = self.blob.start()
            self._write_endpoints()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self.endpoints

    def stop(self) -> None:
        """Stop everything this sandbox started; safe to call twice and after a failed start."""
        errors: list[BaseException] = []
        for part in (self.function_apps, self.blob, self.gcp, self.aws):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # keep stopping the rest; report after
                    errors.append(exc)
        self.function_apps = self.blob = self.gcp = self.aws = None
        if self._loop is not None and self._thread is not None:
            try:
                if self._runners:
                    self._call(self._stop_servers())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
                self._loop.close()
        self._loop = None
        self._thread = None
        self._started = False
        if errors:
            raise errors[0]

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- helpers for tests and the control endpoint -----------------------------------------

    @property
    def ca_file(self) -> str:
        return str(self.endpoints["azure"]["ca_file"])

    @property
    def arm_url(self) -> str:
        return str(self.endpoints["azure"]["arm"])

    @property
    def control_url(self) -> str:
        return str(self.endpoints["control"])

    def reset(self) -> None:
        """Empty every service (the control endpoint's `POST /reset`)."""
        from sandbox.arm.models import arm_backend

        arm_backend(self.ctx).reset()  # deletes every resource, calling each type's hooks
        for module_name, _ in AZURE_SERVICES:
            reset_service: Callable[[SandboxContext], None] | None = getattr(
                importlib.import_module(module_name), "reset", None
            )
            if reset_service is not None:
                reset_service(self.ctx)
        # In place (services may hold the object): the root scope covers every assignment.
        self.ctx.role_assignments.revoke_under("")
        self.ctx.function_hosts.clear()
        if self.aws is not None:
            self.aws.reset()
        if self.blob is not None:
            self.blob.reset()
        if self.gcp is not None:
            self.gcp.reset()
        self.ctx.request_log.clear()
        self.ctx.exchanges.clear()

    def list_resources(self) -> dict[str, list[dict[str, Any]]]:
        from sandbox.arm.models import arm_backend

        out: dict[str, list[dict[str, Any]]] = {"azure": arm_backend(self.ctx).list_all_summaries()}
        if self.aws is not None:
            out["aws"] = list(self.aws.list_resources())
        if self.gcp is not None:
            out["gcp"] = self.gcp.list_resources()
        return out

    # --- internals ---------------------------------------------------------------------------

    def _write_endpoints(self) -> None:
        path = self.state_dir / "endpoints.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.endpoints, indent=2) + "\n")
        tmp.replace(path)

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="sandbox-loop", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=START_TIMEOUT_SECONDS)

    def build_azure_app(self) -> web.Application:
        """The root Azure application: service sub-apps at their prefixes, ARM at the root."""
        from sandbox import arm

        root = web.Application(middlewares=[sandbox_middleware(self.ctx, "azure")], client_max_size=1024**3)
        for module_name, prefix in AZURE_SERVICES:
            mod = importlib.import_module(module_name)
            install: Callable[[SandboxContext], None] | None = getattr(mod, "install", None)
            if install is not None:
                install(self.ctx)
            root.add_subapp(prefix, mod.create_app(self.ctx))
        from sandbox.kudu import proxy

        root.add_subapp("/sites", proxy.create_app(self.ctx))
        arm.install(self.ctx)
        arm.add_routes(root, self.ctx)
        return root

    async def _start_servers(self) -> tuple[str, str]:
        from sandbox import control

        assert self._tls is not None
        azure_runner = web.AppRunner(self.build_azure_app(), access_log=None, handle_signals=False)
        await azure_runner.setup()
        self._runners.append(azure_runner)
        azure_site = web.TCPSite(azure_runner, "127.0.0.1", 0, ssl_context=self._tls.server_context())
        await azure_site.start()
        azure_port = _bound_port(azure_runner)
        azure_url = f"https://127.0.0.1:{azure_port}"
        self.ctx.azure_base_url = azure_url

        control_runner = web.AppRunner(control.create_app(self), access_log=None, handle_signals=False)
        await control_runner.setup()
        self._runners.append(control_runner)
        control_site = web.TCPSite(control_runner, "127.0.0.1", 0)
        await control_site.start()
        control_url = f"http://127.0.0.1:{_bound_port(control_runner)}"
        return azure_url, control_url

    async def _stop_servers(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the sandbox server did not report a bound port")
