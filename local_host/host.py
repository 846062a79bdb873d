"""`LocalHost`: run one function app in this process, on its own thread and event loop.

One process hosts one app at a time: app settings (`environ`) are applied to `os.environ` while
the host runs, as the Functions host does on Azure, and the Durable SDK keeps one process-wide
HTTP session bound to the host's loop. Starting a second host while one runs raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from shared.contracts import ControlPlaneSetting

from .app_loader import FunctionRegistry, load_app
from .durable import fast_replay
from .durable.scheduler import DurableEngine
from .durable.store import Store
from .durable_api import DurableApi, rpc_prefix
from .http_server import build_app, build_rpc_app
from .keys import HostKeys
from .timers import TimerScheduler

log = logging.getLogger("local_host")

STOP_TIMEOUT = 10.0
DEFAULT_APP_DIR = Path(__file__).resolve().parents[1]
_active_lock = threading.Lock()
_active: list[LocalHost] = []


class HostError(Exception):
    """The host cannot start (bad app, port in use, another host already running)."""


def _task_hub(app_dir: Path) -> str:
    try:
        config = json.loads((app_dir / "host.json").read_text())
        hub = config.get("extensions", {}).get("durableTask", {}).get("hubName")
        return str(hub) if hub else "TestHubName"
    except (OSError, json.JSONDecodeError, AttributeError):
        return "TestHubName"


def _reset_sdk_session() -> None:
    """The SDK's client session is module-global and bound to the first loop that used it."""
    from azure.durable_functions.models.utils import http_utils

    http_utils._client_session = None
    http_utils._session_lock = asyncio.Lock()


async def _listen(runner: web.AppRunner, port: int) -> int:
    """Serve `runner` on 127.0.0.1:`port` (0: a free one); the port it got."""
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = getattr(site, "_server", None)
    sockets: Any = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else port


class LocalHost:
    def __init__(self, app_dir: Path | None = None, state_dir: Path | None = None, port: int = 0,
                 function_key: str | None = None, activity_concurrency: int = 8,
                 environ: dict[str, str] | None = None, fast_replay: bool = False) -> None:
        if activity_concurrency < 1:
            raise HostError(f"activity_concurrency must be at least 1, got {activity_concurrency}")
        self.app_dir = Path(app_dir or DEFAULT_APP_DIR).resolve()
        self._state_dir_given = state_dir
        self.state_dir: Path | None = None
        self.port = port
        self._given_key = function_key or os.environ.get(ControlPlaneSetting.FUNCTIONS_HOST_KEY) or None
        # The master key (a given one now; a kept or new one once started: see keys.py).
        self.function_key = self._given_key or ""
        self.key_generated = self._given_key is None
        self.extra_function_keys = tuple(
            k.strip() for k in os.environ.get(ControlPlaneSetting.FUNCTIONS_FUNCTION_KEYS, "").split(",") if k.strip()
        )
        self.keys: HostKeys | None = None
        self.activity_concurrency = activity_concurrency
        self.environ = dict(environ or {})
        # Opt-in memoised timestamp parsing for the SDK's replay (see durable/fast_replay.py).
        self.fast_replay = fast_replay
        self.registry: FunctionRegistry | None = None
        self.engine: DurableEngine | None = None
        self._saved_env: dict[str, str | None] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._temp_dir: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        with _active_lock:
            if _active:
                raise HostError("a LocalHost is already running in this process (one app per process); "
                                "stop it first")
            _active.append(self)
        try:
            self._apply_environ()
            if self.fast_replay:
                fast_replay.enable()
            self.registry = load_app(self.app_dir)
            if self._state_dir_given is None:
                self._temp_dir = tempfile.mkdtemp(prefix="localhost-state-")
                self.state_dir = Path(self._temp_dir)
            else:
                self.state_dir = Path(self._state_dir_given)
                self.state_dir.mkdir(parents=True, exist_ok=True)
            # Kept only in a state folder the caller chose (a temporary one is deleted on stop).
            self.keys = HostKeys.load(self.state_dir if self._temp_dir is None else None, self._given_key,
                                      self.extra_function_keys)
            self.function_key = self.keys.master
            self._ready.clear()
            self._thread = threading.Thread(target=self._run, name="local-host", daemon=True)
            self._thread.start()
            self._ready.wait()
            if self._startup_error is not None:
                self._thread.join()
                raise HostError(f"host failed to start: {self._startup_error}") from self._startup_error
        except BaseException:
            self._cleanup()
            raise
        log.info("local host serving %s on %s (state %s)", self.app_dir, self.base_url, self.state_dir)

    def stop(self) -> None:
        if self._thread is None:
            return
        loop = self._loop
        if loop is not None and self._stop_event is not None:
            loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout=STOP_TIMEOUT)
        if self._thread.is_alive() and loop is not None:
            pending = "\n".join(repr(t) for t in asyncio.all_tasks(loop))
            log.error("local host did not stop within %ss; pending tasks:\n%s", STOP_TIMEOUT, pending)
            self._thread.join()
        self._thread = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.fast_replay:
            fast_replay.disable()
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved_env = {}
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        with _active_lock:
            if self in _active:
                _active.remove(self)

    def _apply_environ(self) -> None:
        for key, value in self.environ.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                log.exception("local host stopped with an error")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        assert self.registry is not None and self.state_dir is not None
        self._stop_event = asyncio.Event()
        _reset_sdk_session()
        store = Store(self.state_dir / "durable.sqlite3")
        engine = DurableEngine(self.registry, store, activity_concurrency=self.activity_concurrency)
        self.engine = engine
        pool = ThreadPoolExecutor(8, thread_name_prefix="http-function")
        assert self.keys is not None
        durable = DurableApi(engine, _task_hub(self.app_dir), self.keys)
        timers = TimerScheduler(self.registry, self.app_dir)
        runner = web.AppRunner(build_app(self.registry, durable, pool, timers), access_log=None)
        # The SDK client's RPC base: its own loopback port and a secret path only this process knows.
        rpc_secret = secrets.token_urlsafe(32)
        rpc_runner = web.AppRunner(build_rpc_app(durable, rpc_secret), access_log=None)
        await runner.setup()
        await rpc_runner.setup()
        try:
            self.port = await _listen(runner, self.port)
            rpc_port = await _listen(rpc_runner, 0)
            durable.rpc_base_url = f"http://127.0.0.1:{rpc_port}{rpc_prefix(rpc_secret)}/"
            await engine.start()
            await timers.start()
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await timers.stop()
            await runner.cleanup()
            await rpc_runner.cleanup()
            await engine.stop()
            from azure.durable_functions.models.utils import http_utils

            session = http_utils._client_session
            if session is not None and not session.closed:
                await session.close()
            http_utils._client_session = None
            pool.shutdown(wait=True, cancel_futures=True)
            store.close()
