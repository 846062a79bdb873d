"""`Azurite`: the Azure Blob emulator (npm `azurite`, pinned 3.35.0) behind a recording proxy.

Azurite itself listens on a free port picked by the OS (`--blobPort 0`; it prints the port it
got). Clients get the proxy's URL, so every blob call passes the shared sandbox middleware
(request log with cloud "blob", injected faults). Azure Storage throttles with
`503 ServerBusy`, never 429, and azure-storage-blob retries 5xx but not 429, so an injected
429 is answered as 503 ServerBusy, as the real service would.

Storage accounts created through the sandbox's ARM get a Blob endpoint here too: Azurite serves
path-style URLs (`<proxy>/<account>/<container>/<blob>`) for the accounts named in its
`AZURITE_ACCOUNTS` environment variable (`name:key1:key2;...`, read at start; naming any
account disables the default `devstoreaccount1`, so it is always listed too). Adding an account
therefore restarts Azurite with the longer list. Its data lives on disk under `--location`, so
it survives; the proxy keeps its port and holds requests that arrive during a restart until
Azurite listens again.
"""

from __future__ import annotations

import asyncio
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
from collections.abc import AsyncIterator, Callable
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
STORAGE_ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"
CONTAINER_TYPE = "Microsoft.Storage/storageAccounts/blobServices/containers"
_CONTAINER_ID_RE = re.compile(r"/storageAccounts/([^/]+)/blobServices/[^/]+/containers/([^/]+)$", re.IGNORECASE)
_READY_RE = re.compile(r"Blob service successfully listens on (https?://[^\s]+)")
_ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_START_TIMEOUT_SECONDS = 30.0
# How long a request arriving during a restart waits for Azurite before it is answered 503.
_RESTART_WAIT_SECONDS = 30.0
# How long a restart waits for the requests Azurite is serving to finish before stopping it.
_DRAIN_SECONDS = 10.0
_SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("blob_upstream_session", aiohttp.ClientSession)
_STOP_TIMEOUT_SECONDS = 10.0


class AzuriteNotInstalled(RuntimeError):
    pass


class AccountRejected(ValueError):
    """An account Azurite cannot serve; ARM answers it as a refused PUT (`status`, `code`)."""

    def __init__(self, message: str, status: int = 400, code: str = "AccountNameInvalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


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


def connection_string(blob_endpoint: str, account: str = ACCOUNT_NAME, key: str = ACCOUNT_KEY) -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={blob_endpoint};"


def storage_fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    """Azure Storage's answer when it sheds load: 503 ServerBusy (also for an injected 429)."""
    message = (
        "Ingress is over the account limit."
        if status == 429
        else "The server is currently unable to receive requests. Please retry your request."
    )
    return _storage_error(503, "ServerBusy", message, {"Retry-After": str(retry_after)})


def _storage_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(
        status=status,
        text=body,
        content_type="application/xml",
        headers={"x-ms-error-code": code, **(headers or {})},
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
        self.azurite_url = ""  # Azurite itself (no log, no faults): for reset(); changes on restart
        self.proxy_url = ""  # the proxy's root, e.g. http://127.0.0.1:PORT (stable)
        self.account_url = ""  # what clients of devstoreaccount1 use (through the proxy)
        # Accounts besides devstoreaccount1: name -> (key1, key2), all base64.
        self._accounts: dict[str, tuple[str, str]] = {}
        # Guards the fields below; requests and restarts meet on it.
        self._cond = threading.Condition()
        self._serving = False  # False while Azurite (re)starts: requests wait
        self._inflight = 0  # requests being forwarded to Azurite now
        self._dirty = False  # the account list changed since Azurite last started
        # What ARM did to containers, applied to Azurite by the worker after any restart.
        self._pending: deque[Callable[[], None]] = deque()
        self._closing = False
        self._failure = ""  # why the last restart failed (requests get it as a 503)
        self._worker: threading.Thread | None = None
        self._proc_lock = threading.Lock()  # one start/stop of the node process at a time
        self.restarts = 0

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        if self._proc is not None:
            raise RuntimeError("Azurite is already started")
        self._closing = False
        try:
            with self._proc_lock:
                self._launch()
            with self._cond:
                self._serving = True
            self._start_proxy()
            self.ctx.register_hooks(STORAGE_ACCOUNT_TYPE, _StorageAccountHooks(self))
            self.ctx.register_hooks(CONTAINER_TYPE, _ContainerHooks(self))
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _launch(self) -> None:
        """Start node with the current account list; sets `azurite_url`. Caller holds `_proc_lock`."""
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
        env = {**os.environ, "NODE_NO_WARNINGS": "1"}
        env.pop("AZURITE_ACCOUNTS", None)
        if self._accounts:
            env["AZURITE_ACCOUNTS"] = _accounts_env(self._accounts)
        launcher = Path(__file__).with_name("launcher.py")
        # Own process group: stop() signals launcher and node together.
        proc = subprocess.Popen(
            [sys.executable, str(launcher), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self._proc = proc
        ready = threading.Event()
        found: list[str] = []
        output = self._output

        def read_output() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                output.append(line)
                m = _READY_RE.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()  # EOF: the process ended

        self._reader = threading.Thread(target=read_output, name="sandbox-azurite-output", daemon=True)
        self._reader.start()
        if not ready.wait(_START_TIMEOUT_SECONDS) or not found:
            tail = "\n".join(self._output)
            raise RuntimeError(f"Azurite did not start within {_START_TIMEOUT_SECONDS:.0f} s; its output:\n{tail}")
        self.azurite_url = found[0].rstrip("/")

    def _halt(self) -> None:
        """Stop node (and its output reader). Caller holds `_proc_lock`."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_group(proc)
        if self._reader is not None:
            self._reader.join(_STOP_TIMEOUT_SECONDS)
            self._reader = None

    @property
    def endpoints(self) -> dict[str, Any]:
        return {"account_url": self.account_url, "connection_string": connection_string(self.account_url)}

    @property
    def pid(self) -> int | None:
        """The launcher's pid (also the process group id of launcher and node)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop the proxy and Azurite, and wait until no process is left; safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(_START_TIMEOUT_SECONDS + 2 * _STOP_TIMEOUT_SECONDS + _DRAIN_SECONDS)
        server, self._server = self._server, None
        if server is not None:
            server.stop(_STOP_TIMEOUT_SECONDS)
        with self._proc_lock:
            self._halt()
        with self._cond:
            self._serving = False
        self.account_url = self.azurite_url = self.proxy_url = ""

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- accounts --------------------------------------------------------------------------------

    def blob_endpoint(self, account: str) -> str | None:
        """The Blob endpoint of `account` through the proxy (ARM's `primaryEndpoints.blob`), or
        None when Azurite is not running."""
        if not self.proxy_url:
            return None
        return f"{self.proxy_url}/{account}/"

    @property
    def accounts(self) -> dict[str, tuple[str, str]]:
        with self._cond:
            return dict(self._accounts)

    def add_account(self, name: str, key1: str, key2: str) -> None:
        """Serve `name` with these keys. Returns at once; Azurite restarts in the background and
        requests wait for it. A known account with the same keys changes nothing."""
        if name == ACCOUNT_NAME:
            raise AccountRejected(
                f"The storage account named {name} is already taken (by the sandbox's Blob emulator).",
                409,
                "StorageAccountAlreadyTaken",
            )
        if not _ACCOUNT_NAME_RE.match(name):
            raise AccountRejected(f"{name!r}: storage account names are 3 to 24 lower-case letters and digits")
        for label, key in (("key1", key1), ("key2", key2)):
            if not _BASE64_RE.match(key):
                # Never echo the key itself.
                raise AccountRejected(f"storage account {name}: {label} is not base64, which Azurite needs")
        with self._cond:
            if self._closing or not self.proxy_url:
                return
            if self._accounts.get(name) == (key1, key2):
                return
            self._accounts[name] = (key1, key2)
            self._dirty = True
            self._wake_worker()

    def apply(self, op: Callable[[], None]) -> None:
        """Run `op` (a direct call to Azurite) in the background after any pending restart; requests
        wait until it is done, so what ARM did is visible to the next data-plane call."""
        with self._cond:
            if self._closing or not self.proxy_url:
                return
            self._pending.append(op)
            self._wake_worker()

    def _wake_worker(self) -> None:
        """Caller holds `_cond`."""
        self._serving = False  # from now on requests wait for the worker
        if self._worker is None:
            self._worker = threading.Thread(target=self._restart_loop, name="sandbox-azurite-restart", daemon=True)
            self._worker.start()

    def wait_until_serving(self, timeout: float = _RESTART_WAIT_SECONDS) -> bool:
        """True once no restart is pending (for control calls and tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._serving or self._closing, timeout)

    def _restart_loop(self) -> None:
        """Restart Azurite until it runs with the latest account list, then apply pending ops."""
        while True:
            op: Callable[[], None] | None = None
            with self._cond:
                if self._closing:
                    self._worker = None
                    return
                if not self._dirty and self._pending:
                    op = self._pending.popleft()
                elif not self._dirty:
                    self._serving = True
                    self._worker = None
                    self._cond.notify_all()
                    return
            if op is not None:
                try:
                    op()
                except Exception as exc:  # one failed op must not block the others
                    log.warning("applying an ARM change to Azurite failed: %s", type(exc).__name__)
                continue
            with self._cond:
                self._dirty = False
                # Let what Azurite is serving finish; requests arriving now wait in the proxy.
                self._cond.wait_for(lambda: self._inflight == 0 or self._closing, _DRAIN_SECONDS)
            with self._proc_lock:
                if self._closing:
                    continue
                started = time.monotonic()
                try:
                    self._halt()
                    self._launch()
                    failure = ""
                except Exception as exc:  # answered to waiting requests as 503; the next change retries
                    log.error("Azurite restart failed: %s", exc)
                    failure = f"The sandbox Blob emulator failed to restart: {type(exc).__name__}"
                self.restarts += 1
                log.info("Azurite restarted with %d extra account(s) in %.2f s", len(self._accounts),
                         time.monotonic() - started)
            with self._cond:
                self._failure = failure

    async def _enter(self) -> web.Response | None:
        """Wait until Azurite serves (bounded); None to go on, or the error to answer."""
        deadline = time.monotonic() + _RESTART_WAIT_SECONDS
        while True:
            with self._cond:
                if self._serving and not self._failure:
                    self._inflight += 1
                    return None
                failure = self._failure if self._serving else ""
            if failure:
                return _storage_error(503, "ServerBusy", failure, {"Retry-After": "1"})
            if time.monotonic() >= deadline:
                return _storage_error(
                    503, "ServerBusy", "The sandbox Blob emulator is restarting; retry shortly.", {"Retry-After": "1"}
                )
            await asyncio.sleep(0.05)

    def _leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    # --- proxy -----------------------------------------------------------------------------------

    def _start_proxy(self) -> None:
        app = web.Application(
            middlewares=[sandbox_middleware(self.ctx, "blob", fault_responder=storage_fault_response)],
            client_max_size=1024 * 1024 * 1024,
        )

        async def session_ctx(app: web.Application) -> AsyncIterator[None]:
            session = passthrough_session()
            app[_SESSION_KEY] = session
            yield
            await session.close()

        async def handle(request: web.Request) -> web.StreamResponse:
            refused = await self._enter()
            if refused is not None:
                return refused
            try:
                return await forward(request, request.app[_SESSION_KEY], self.azurite_url)
            except Exception as exc:
                log.exception("blob proxy failed on %s %s", request.method, request.path)
                return _storage_error(500, "InternalError", f"The sandbox blob proxy failed: {type(exc).__name__}")
            finally:
                self._leave()

        app.cleanup_ctx.append(session_ctx)
        app.router.add_route("*", "/{tail:.*}", handle)
        self._server = ThreadedAppServer(app, "sandbox-blob-proxy")
        port = self._server.start(_START_TIMEOUT_SECONDS)
        self.proxy_url = f"http://127.0.0.1:{port}"
        self.account_url = f"{self.proxy_url}/{ACCOUNT_NAME}"

    # --- control ---------------------------------------------------------------------------------

    def direct_client(self, account: str) -> Any:
        """A client straight to Azurite for `account` (None if unknown): control calls and ARM's
        changes are not cloud traffic to record or fault. Call it when no restart is pending."""
        from azure.storage.blob import BlobServiceClient

        key = ACCOUNT_KEY if account == ACCOUNT_NAME else self.accounts.get(account, ("", ""))[0]
        if not key or not self.azurite_url:
            return None
        return BlobServiceClient.from_connection_string(connection_string(f"{self.azurite_url}/{account}", account, key))

    def _direct_clients(self) -> list[Any]:
        if not self.wait_until_serving() or not self.azurite_url:
            raise RuntimeError("Azurite is not serving")
        return [self.direct_client(name) for name in [ACCOUNT_NAME, *sorted(self.accounts)]]

    def reset(self) -> None:
        """Delete every container of every account."""
        for client in self._direct_clients():
            with client:
                for container in list(client.list_containers()):
                    client.delete_container(container.name)

    def list_resources(self) -> list[dict[str, str]]:
        """Every blob container that exists now, as `{"cloud": "blob", "type": "container", "id": URL}`."""
        out: list[dict[str, str]] = []
        for client in self._direct_clients():
            with client:
                base = f"{self.proxy_url}/{client.account_name}"
                out += [{"cloud": "blob", "type": "container", "id": f"{base}/{c.name}"} for c in client.list_containers()]
        return out


class _StorageAccountHooks:
    """ARM's storage accounts get a Blob data plane in Azurite (ARM's enrich asks `blob_endpoint`)."""

    def __init__(self, azurite: Azurite) -> None:
        self.owner = azurite

    def blob_endpoint(self, account: str) -> str | None:
        return self.owner.blob_endpoint(account)

    def on_put(self, resource_id: str, resource: dict) -> None:
        from sandbox.arm.models import arm_backend

        res = arm_backend(self.owner.ctx).get(resource_id)
        if res is None or "key1" not in res.secrets or "key2" not in res.secrets:
            return
        self.owner.add_account(res.rid.name, res.secrets["key1"], res.secrets["key2"])

    def on_delete(self, resource_id: str) -> None:
        # Its containers go with it, as in Azure. The account itself stays known to Azurite (a
        # restart per delete is not worth it) until a new account of that name replaces its keys.
        name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        owner = self.owner

        def drop_containers() -> None:
            client = owner.direct_client(name)
            if client is None:
                return
            with client:
                for container in list(client.list_containers()):
                    client.delete_container(container.name)

        owner.apply(drop_containers)


class _ContainerHooks:
    """A container created or deleted through ARM exists (or not) in the account's Blob data plane."""

    def __init__(self, azurite: Azurite) -> None:
        self.owner = azurite

    def _change(self, resource_id: str, create: bool) -> None:
        m = _CONTAINER_ID_RE.search(resource_id)
        if m is None:
            return
        account, container = m.group(1), m.group(2)
        owner = self.owner

        def change() -> None:
            from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

            client = owner.direct_client(account)
            if client is None:
                return
            with client:
                try:
                    if create:
                        client.create_container(container)
                    else:
                        client.delete_container(container)
                except (ResourceExistsError, ResourceNotFoundError):
                    pass  # already as ARM wants it

        owner.apply(change)

    def on_put(self, resource_id: str, resource: dict) -> None:
        self._change(resource_id, create=True)

    def on_delete(self, resource_id: str) -> None:
        self._change(resource_id, create=False)


def _accounts_env(accounts: dict[str, tuple[str, str]]) -> str:
    """`AZURITE_ACCOUNTS`: devstoreaccount1 first (naming any account disables the default one)."""
    items = [f"{ACCOUNT_NAME}:{ACCOUNT_KEY}"] + [f"{n}:{k1}:{k2}" for n, (k1, k2) in sorted(accounts.items())]
    return ";".join(items)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Ask the launcher to stop node (one SIGTERM: node then saves its data and exits) and wait
    until the process group is empty; SIGKILL what lingers."""
    pgid = proc.pid
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    # Only the launcher: a SIGTERM to the whole group would reach node twice (directly and
    # forwarded), and node dies on the second before its database is saved.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pgid, signal.SIGTERM)
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
