"""`Azurite`: the Azure Blob emulator (npm `azurite`, pinned 3.35.0) behind a recording proxy.

Azurite itself listens on a free port picked by the OS (`--blobPort 0`; it prints the port it
got). Clients get the proxy's URL, so every blob call passes the shared sandbox middleware
(request log with cloud "blob", injected faults). Azure Storage throttles with
`503 ServerBusy`, never 429, and azure-storage-blob retries 5xx but not 429, so an injected
429 is answered as 503 ServerBusy, as the real service would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.aws.proxy import ThreadedAppServer, forward, passthrough_session
from sandbox.core.context import SandboxContext
from sandbox.core.http import sandbox_middleware

log = logging.getLogger("sandbox.blob")

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# The well-known Azurite development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_READY_RE = re.compile(r"Blob service successfully listens on (https?://[^\s]+)")
_START_TIMEOUT_SECONDS = 30.0
_SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("blob_upstream_session", aiohttp.ClientSession)
_STOP_TIMEOUT_SECONDS = 10.0


class AzuriteNotInstalled(RuntimeError):
    pass


def azurite_command(repo_root: Path = REPO_ROOT) -> list[str]:
    """The command that starts Azurite's Blob service, or AzuriteNotInstalled saying what to do."""
    node = shutil.which("node")
    script = repo_root / "node_modules" / ".bin" / "azurite-blob"
    if node is None:
        raise AzuriteNotInstalled(
            "Node.js is not on PATH; the sandbox's Azure Blob emulator (Azurite) needs it. "
            f"Install Node 20, then run `npm ci` in {repo_root} (`make install` does it)."
        )
    if not script.exists():
        raise AzuriteNotInstalled(
            f"Azurite is not installed ({script} is missing): run `npm ci` in {repo_root} (`make install` does it)."
        )
    return [node, str(script.resolve())]


def connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint};"
    )


def storage_fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    """Azure Storage's answer when it sheds load: 503 ServerBusy (also for an injected 429)."""
    message = (
        "Ingress is over the account limit."
        if status == 429
        else "The server is currently unable to receive requests. Please retry your request."
    )
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>{message}</Message></Error>'
    return web.Response(
        status=503,
        text=body,
        content_type="application/xml",
        headers={"x-ms-error-code": "ServerBusy", "Retry-After": str(retry_after)},
    )


class Azurite:
    """Azurite (Blob only) with its data in `state_dir/azurite`, fronted by a recording proxy."""

    def __init__(self, ctx: SandboxContext, state_dir: Path | str) -> None:
        self.ctx = ctx
        self.state_dir = Path(state_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: deque[str] = deque(maxlen=50)
        self._reader: threading.Thread | None = None
        self._server: ThreadedAppServer | None = None
        self.azurite_url = ""  # Azurite itself (no log, no faults): for reset()
        self.account_url = ""  # what clients use (through the proxy)

    def start(self) -> dict[str, Any]:
        if self._proc is not None:
            raise RuntimeError("Azurite is already started")
        command = azurite_command()
        location = self.state_dir / "azurite"
        location.mkdir(parents=True, exist_ok=True)
        args = [
            *command,
            "--blobHost", "127.0.0.1",
            "--blobPort", "0",
            "--location", str(location),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]  # fmt: skip
        launcher = Path(__file__).with_name("launcher.py")
        # Own process group: stop() signals launcher and node together.
        self._proc = subprocess.Popen(
            [sys.executable, str(launcher), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        ready = threading.Event()
        found: list[str] = []
        proc = self._proc

        def read_output() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self._output.append(line)
                m = _READY_RE.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()  # EOF: the process ended

        self._reader = threading.Thread(target=read_output, name="sandbox-azurite-output", daemon=True)
        self._reader.start()
        try:
            if not ready.wait(_START_TIMEOUT_SECONDS) or not found:
                tail = "\n".join(self._output)
                raise RuntimeError(f"Azurite did not start within {_START_TIMEOUT_SECONDS:.0f} s; its output:\n{tail}")
            self.azurite_url = found[0].rstrip("/")
            self._start_proxy()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    @property
    def endpoints(self) -> dict[str, Any]:
        return {"account_url": self.account_url, "connection_string": connection_string(self.account_url)}

    @property
    def pid(self) -> int | None:
        """The launcher's pid (also the process group id of launcher and node)."""
        return self._proc.pid if self._proc is not None else None

    def _start_proxy(self) -> None:
        app = web.Application(
            middlewares=[sandbox_middleware(self.ctx, "blob", fault_responder=storage_fault_response)],
            client_max_size=1024 * 1024 * 1024,
        )
        upstream = self.azurite_url

        async def session_ctx(app: web.Application) -> AsyncIterator[None]:
            session = passthrough_session()
            app[_SESSION_KEY] = session
            yield
            await session.close()

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await forward(request, request.app[_SESSION_KEY], upstream)
            except Exception as exc:
                log.exception("blob proxy failed on %s %s", request.method, request.path)
                body = (
                    '<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code>'
                    f"<Message>The sandbox blob proxy failed: {type(exc).__name__}</Message></Error>"
                )
                return web.Response(status=500, text=body, content_type="application/xml")

        app.cleanup_ctx.append(session_ctx)
        app.router.add_route("*", "/{tail:.*}", handle)
        self._server = ThreadedAppServer(app, "sandbox-blob-proxy")
        port = self._server.start(_START_TIMEOUT_SECONDS)
        self.account_url = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"

    def stop(self) -> None:
        """Stop the proxy and Azurite, and wait until no process is left; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(_STOP_TIMEOUT_SECONDS)
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_group(proc)
        if self._reader is not None:
            self._reader.join(_STOP_TIMEOUT_SECONDS)
            self._reader = None
        self.account_url = self.azurite_url = ""

    def _direct_client(self) -> Any:
        """A client straight to Azurite: control calls are not cloud traffic to record or fault."""
        from azure.storage.blob import BlobServiceClient

        if not self.azurite_url:
            raise RuntimeError("Azurite is not started")
        endpoint = f"{self.azurite_url}/{ACCOUNT_NAME}"
        return BlobServiceClient.from_connection_string(connection_string(endpoint))

    def reset(self) -> None:
        """Delete every container."""
        with self._direct_client() as client:
            for container in list(client.list_containers()):
                client.delete_container(container.name)

    def list_resources(self) -> list[dict[str, str]]:
        """Every blob container that exists now, as `{"cloud": "blob", "type": "container", "id": URL}`."""
        with self._direct_client() as client:
            return [
                {"cloud": "blob", "type": "container", "id": f"{self.account_url}/{c.name}"}
                for c in client.list_containers()
            ]

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the launcher's process group and wait until it is empty; SIGKILL what lingers."""
    pgid = proc.pid
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(_STOP_TIMEOUT_SECONDS)
    # The launcher waits for node before it exits; this only catches a node that ignored SIGTERM.
    deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
