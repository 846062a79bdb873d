"""Engine test helpers and fixtures: the engine's test app on the local host, with the fake provider.

Test modules import from here by this unique name: several test folders run in one pytest
process and each has its own `conftest`; test modules load the fixtures with
`pytest_plugins = ["engine_helpers"]`.

`engine` starts a `LocalHost` (in-process, real Durable SDK) whose app registers the project's
blueprints; providers come from `app/engine_fake_provider.py` (SQLite state + call log). Events
go through the host's own Event Grid webhook (so `twin.output.changed` re-triggers propagation)
and to a recorder function (so tests can scan every event).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local_host import LocalHost

APP = Path(__file__).parent / "app"
KEY = "engine-test-key"
FAST = {"retry_first_seconds": 0.2, "retry_max_seconds": 1.0, "poll_timeout_seconds": 60, "grace_seconds": 0.5,
        "lock_wait_seconds": 30}
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def http(method: str, url: str, body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


@dataclass
class Engine:
    base: str
    key: str
    db_path: Path
    config_path: Path
    events_path: Path
    log_lines: list[str] = field(default_factory=list)

    # --- HTTP ---------------------------------------------------------------------------
    def api(self, method: str, route: str, body: Any = None, raw: bytes | None = None) -> Reply:
        sep = "&" if "?" in route else "?"
        return http(method, f"{self.base}/api/{route}{sep}code={self.key}", body, raw)

    def durable(self, method: str, path: str, body: Any = None) -> Reply:
        sep = "&" if "?" in path else "?"
        return http(method, f"{self.base}/runtime/webhooks/durabletask/{path}{sep}code={self.key}", body)

    def start(self, orchestrator: str, instance: str, payload: Any) -> str:
        reply = self.durable("POST", f"orchestrators/{orchestrator}/{instance}", payload)
        assert reply.status == 202, reply.body
        return instance

    def status(self, instance: str) -> dict[str, Any]:
        reply = self.durable("GET", f"instances/{instance}")
        assert reply.status in (200, 202), (reply.status, reply.body)
        return reply.json()

    def wait(self, instance: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(instance)
            if status["runtimeStatus"] in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance} still {status['runtimeStatus']}: {status.get('customStatus')}")
            time.sleep(0.05)

    def wait_idle(self, twin: str, timeout: float = 60) -> None:
        """Until no orchestration of the twin runs (event-triggered propagations included)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.durable("GET", f"instances/?instanceIdPrefix=twin:{twin}:&runtimeStatus=Running,Pending")
            if reply.status == 200 and not reply.json():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"twin {twin} still busy: {[s['instanceId'] for s in reply.json()]}")
            time.sleep(0.1)

    def view(self, instance: str) -> dict[str, Any]:
        reply = self.api("GET", f"deployments/{instance}")
        assert reply.status == 200, reply.body
        return reply.json()

    # --- fake provider --------------------------------------------------------------------
    def configure(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(config))

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.db_path), timeout=30)

    def calls(self, op: str | None = None) -> list[tuple[str, str, float, float]]:
        try:
            with self.db() as db:
                rows = db.execute("SELECT op, rid, started, ended FROM calls ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # the provider has not created its tables yet
            return []
        return [tuple(r) for r in rows if op is None or r[0] == op]  # type: ignore[misc]

    def settings(self, rid: str) -> dict[str, Any]:
        with self.db() as db:
            row = db.execute("SELECT settings FROM resources WHERE rid = ?", (rid,)).fetchone()
        return json.loads(row[0]) if row else {}

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]


def engine_environ(tmp: Path, port: int, options: dict[str, Any] | None = None) -> dict[str, str]:
    webhook = f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?code={KEY}&functionName="
    return {
        "TWIN_PROVIDER_MODULES": "activities.providers.control,engine_fake_provider",
        "ENGINE_FAKE_DB": str(tmp / "fake.sqlite"),
        "ENGINE_FAKE_CONFIG": str(tmp / "fake.json"),
        "ENGINE_EVENTS_LOG": str(tmp / "events.jsonl"),
        "TWIN_EVENTS_ENDPOINT": f"{webhook}twin_events,{webhook}record_event",
        "TWIN_ENGINE_OPTIONS": json.dumps({**FAST, **(options or {})}),
    }


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Any]:
    hosts: list[LocalHost] = []

    def make(options: dict[str, Any] | None = None, activity_concurrency: int = 8,
             environ: dict[str, str] | None = None) -> Engine:
        port = free_port()
        env = {**engine_environ(tmp_path, port, options), **(environ or {})}
        host = LocalHost(app_dir=APP, state_dir=tmp_path / "host", port=port, function_key=KEY,
                         activity_concurrency=activity_concurrency, environ=env)
        host.start()
        hosts.append(host)
        return Engine(host.base_url, KEY, tmp_path / "fake.sqlite", tmp_path / "fake.json", tmp_path / "events.jsonl")

    make.hosts = hosts  # type: ignore[attr-defined]  (tests that stop or break a host reach it here)
    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def engine(engine_factory: Any) -> Engine:
    return engine_factory()


def resource(rid: str, needs: list[str] | None = None, produces: list[str] | None = None, **config: Any) -> dict[str, Any]:
    provider, layer, _ = rid.split("/", 2)
    return {"id": rid, "layer": layer, "provider": provider, "kind": config.pop("kind", "thing"),
            "needs": needs or [], "produces": produces or [], "config": config}


def plan(twin: str, resources: list[dict[str, Any]], wires: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
         secret: tuple[str, ...] = ()) -> dict[str, Any]:
    """A hand-made engine plan; wires are (output, consumer, setting)."""
    producers = {o: r["id"] for r in resources for o in r["produces"]}
    return {
        "twin": twin,
        "resources": resources,
        "outputs": [{"name": o, "producer": p, "secret": o in secret} for o, p in producers.items()],
        "wires": [{"output": o, "producer": producers[o], "consumer": c, "setting": s} for o, c, s in wires],
        "problems": [],
    }
