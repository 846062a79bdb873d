"""`AwsSandbox`: moto's server in-process plus our proxy in front of it (contract 6/7)."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any

from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from sandbox.aws.execution import Execution
from sandbox.aws.grafana.models import GrafanaBackends
from sandbox.aws.inventory import moto_resources
from sandbox.aws.iot_tags import IotTags
from sandbox.aws.lifecycle import Lifecycle
from sandbox.aws.protocol import ACCOUNT_ID
from sandbox.aws.proxy import ThreadedAppServer, create_app
from sandbox.aws.twinmaker.models import TwinMakerBackends
from sandbox.core.context import SandboxContext
from sandbox.runtime.lambdas import LambdaRunner

DEFAULT_REGION = "eu-central-1"
_START_TIMEOUT_SECONDS = 30
# Lambda without Docker: the "simple" backend, which must be chosen before any function is
# created (it keeps its own store).
MOTO_CONFIG = {"lambda": {"use_docker": False}}
# Never through an HTTP(S)_PROXY from the environment: moto listens on 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# The moto services the providers, payload functions and tests call (moto's backend names).
MOTO_SERVICES = ("moto_api", "sts", "iam", "lambda", "iot", "iot-data", "dynamodb", "s3", "events",
                 "logs", "secretsmanager", "stepfunctions", "resource-groups", "resourcegroupstaggingapi")


class AwsSandbox:
    """The AWS side of the sandbox.

    moto keeps its state in module globals, so all AwsSandbox objects in one process share one
    moto state, and `start()` and `reset()` empty it for all of them (a new sandbox begins
    empty). TwinMaker, Grafana and the request log are per object.
    Clients need `endpoint_url` (all services share it), any access key, and for TwinMaker
    `botocore.config.Config(inject_host_prefix=False)` (botocore would otherwise send TwinMaker
    calls to `api.127.0.0.1`, which does not resolve).
    """

    def __init__(self, ctx: SandboxContext, region: str = DEFAULT_REGION) -> None:
        self.ctx = ctx
        self.region = region
        self.twinmaker = TwinMakerBackends(ctx.faults)
        # Workspaces' Grafana HTTP API is served by the Azure HTTPS server's Grafana data plane,
        # once that server runs (a standalone AWS sandbox reports AWS-style endpoints only).
        self.grafana = GrafanaBackends(ctx.faults, data_plane=self._grafana_data_plane)
        self.lifecycle = Lifecycle(ctx.faults)
        self.iot_tags = IotTags(ACCOUNT_ID)
        # Runs deployed Lambda zips (invoke, function URLs, IoT rules); a new one per proxy start.
        self.execution: Execution | None = None
        self._moto: ThreadedMotoServer | None = None
        self._moto_url = ""
        self._server: ThreadedAppServer | None = None
        self.endpoint_url = ""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        if self._moto is not None:
            raise RuntimeError("AwsSandbox is already started")
        # Read by moto when it builds the IAM backend; needed to attach AWS managed policies.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        # IoT certificate ids as AWS makes them: the SHA-256 of the DER certificate (moto hashes
        # the PEM text otherwise), so a deployer knows a certificate's id before registering it.
        # moto's /moto-api/config does not take this setting; moto runs in this process.
        default_user_config["iot"] = {"use_valid_cert": True}
        # moto's werkzeug server logs every request to stderr; the request log already has them.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        self._build_service_apps()
        host, port = self._moto.get_host_and_port()
        self._moto_url = f"http://{host}:{port}"
        try:
            self._moto_api("POST", "/moto-api/config", MOTO_CONFIG)
            self._moto_api("POST", "/moto-api/reset", None)
            self._start_proxy()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _build_service_apps(self) -> None:
        """Build moto's per-service apps now, before any traffic. moto builds one on a service's
        first request, on a server thread, and werkzeug compiles each URL rule with `ast.parse`;
        CPython 3.11's AST constructor is not thread-safe (gh-106905), so that could corrupt a parse
        running at the same time on another thread (an activity packaging payload code)."""
        server = getattr(self._moto, "_server", None)
        dispatcher = getattr(server, "app", None)
        if dispatcher is None:
            return
        with dispatcher.lock:
            for service in MOTO_SERVICES:
                if service not in dispatcher.app_instances:
                    dispatcher.app_instances[service] = dispatcher.create_app(service)

    @property
    def endpoints(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "account_id": ACCOUNT_ID,
            # Same proxy: it routes by the SigV4 signing name, so TwinMaker and Grafana
            # (both under /workspaces) never collide.
            "twinmaker_endpoint_url": self.endpoint_url,
            "grafana_endpoint_url": self.endpoint_url,
        }

    def _start_proxy(self) -> None:
        runner = LambdaRunner(self.ctx.state_dir, str(self.ctx.state_dir / "ca.pem"))
        self.execution = Execution(runner)
        app = create_app(self.ctx, self._moto_url, self.twinmaker, self.grafana, self.lifecycle, self.execution,
                         self.iot_tags)
        self._server = ThreadedAppServer(app, "sandbox-aws-proxy")
        port = self._server.start(_START_TIMEOUT_SECONDS)
        self.endpoint_url = f"http://127.0.0.1:{port}"
        runner.endpoint_url = self.endpoint_url

    def stop(self) -> None:
        """Stop the proxy and moto; safe to call twice or after a failed start."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(_START_TIMEOUT_SECONDS)
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()
            # ThreadedMotoServer.stop() ends serve_forever but leaves the listening socket open.
            inner = getattr(moto, "_server", None)
            if inner is not None:
                inner.server_close()
        self.endpoint_url = ""
        self._moto_url = ""

    def __enter__(self) -> AwsSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control -------------------------------------------------------------------------

    def _grafana_data_plane(self) -> Any:
        if not self.ctx.azure_base_url:
            return None
        from sandbox.grafana import backend

        return backend(self.ctx)

    def list_resources(self) -> list[dict[str, str]]:
        """Every AWS resource that exists now: moto's and our TwinMaker/Grafana ones."""
        return moto_resources() + self.twinmaker.resources() + self.grafana.resources()

    def reset(self) -> None:
        """Forget every AWS resource (moto's and ours); Lambda stays on the simple backend."""
        self._moto_api("POST", "/moto-api/reset", None)
        self._moto_api("POST", "/moto-api/config", MOTO_CONFIG)
        if self._server is not None and self.execution is not None:
            # The functions are gone: so are their warm workers (and queued async invocations),
            # and the rules' schedules.
            self._server.call(self._reset_execution(self.execution))
        self.twinmaker.reset()
        self.grafana.reset()
        self.lifecycle.reset()
        self.iot_tags.reset()

    @staticmethod
    async def _reset_execution(execution: Execution) -> None:
        execution.schedules.reset()
        await execution.runner.close()

    async def _run_rule(self, name: str, moment: Any) -> dict[str, Any]:
        assert self.execution is not None
        return await self.execution.schedules.run_now(name, self.region, moment)

    def run_rule(self, name: str, moment: Any = None, timeout: float = 900.0) -> dict[str, Any]:
        """Run EventBridge rule `name` once now, or as at `moment` (a UTC datetime: the event's
        `time`), on the proxy's loop (where the Lambda workers live); each target's outcome.
        KeyError for an unknown rule, `schedules.RuleDisabled` for a disabled one."""
        if self._server is None or self.execution is None:
            raise RuntimeError("AwsSandbox is not started")
        result: dict[str, Any] = self._server.call(self._run_rule(name, moment), timeout)
        return result

    def set_lambda_results(self, results: list[str], region: str | None = None) -> None:
        """Queue canned Lambda invoke results (moto's simple backend answers these in order)."""
        self._moto_api(
            "POST",
            "/moto-api/static/lambda-simple/response",
            {"results": results, "region": region or self.region},
        )

    def _moto_api(self, method: str, path: str, body: dict[str, Any] | None) -> bytes:
        """Talk to moto directly (not through the proxy: these are not cloud calls)."""
        if not self._moto_url:
            raise RuntimeError("AwsSandbox is not started")
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self._moto_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with _DIRECT.open(req, timeout=_START_TIMEOUT_SECONDS) as resp:
            return bytes(resp.read())
