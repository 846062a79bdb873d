"""A test provider for every (provider, kind): resources and settings live in a SQLite file.

Registered for `*/*` when imported (app setting `TWIN_PROVIDER_MODULES=engine_fake_provider`).
Files come from app settings: `ENGINE_FAKE_DB` (state and the call log, which tests read) and
`ENGINE_FAKE_CONFIG` (behaviour, re-read on every call so a test can change it mid-run):

    {"default": {...}, "kinds": {kind: {...}}, "resources": {id: {...}}}   # later wins
    behaviour keys: delay (s, inside ensure), long (s, a long operation polled), poll_after (s),
    transient_failures (n first ensure calls fail transiently), permanent (message),
    delete_missing (bool: the resource is already gone), apply_delay (s), apply_rollout (n: after a
    settings write, that many calls answer pending before it serves), generation (int, part of
    every output value: bump it to change outputs)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from activities.registry import ANY, Provider, register
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import EnsureResult, Pending, ReadResult, ResourceCall

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT, rid TEXT,
                                  started REAL, ended REAL, detail TEXT);
CREATE TABLE IF NOT EXISTS resources (rid TEXT PRIMARY KEY, generation INTEGER, outputs TEXT, settings TEXT,
                                      config TEXT, pending_until REAL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, n INTEGER);
"""
SECRET_MARKERS = ("TOKEN", "KEY", "CONNECTION_STRING", "CREDENTIALS", "SECRET")


_WRITE = threading.RLock()  # one writer at a time in this process: SQLite's busy backoff is slow
_ready: set[str] = set()


def connect(path: str | Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")  # test data: no fsync per write (the fake cloud must not be the bottleneck)
    if str(path) not in _ready:
        with _WRITE:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        _ready.add(str(path))
    return db


class _Connection:
    """One connection per thread and database file, kept open (the fake cloud must stay cheap per
    call: a fan-out benchmark runs a hundred of these calls at once); `close` keeps it."""

    _local = threading.local()

    @classmethod
    def get(cls, path: str) -> _Connection:
        cached: dict[str, sqlite3.Connection] = cls._local.__dict__.setdefault("by_path", {})
        if path not in cached:
            cached[path] = connect(path)
        return cls(cached[path])

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, *args: Any) -> sqlite3.Cursor:
        return self._db.execute(*args)

    def close(self) -> None:
        pass


def _db() -> Any:
    return _Connection.get(os.environ["ENGINE_FAKE_DB"])


_config_cache: dict[str, tuple[bytes, dict[str, Any]]] = {}


def _config(path: str | None) -> dict[str, Any]:
    """The behaviour file, read on every call (a test may rewrite it mid-run), parsed when it changed."""
    if not path:
        return {}
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    cached = _config_cache.get(path)
    if cached is None or cached[0] != raw:
        cached = _config_cache[path] = (raw, json.loads(raw) if raw.strip() else {})
    return cached[1]


def behaviour(rid: str, kind: str) -> dict[str, Any]:
    config = _config(os.environ.get("ENGINE_FAKE_CONFIG"))
    merged = dict(config.get("default", {}))
    merged.update(config.get("kinds", {}).get(kind, {}))
    merged.update(config.get("resources", {}).get(rid, {}))
    return merged


def _log(db: Any, op: str, rid: str, started: float, detail: Any = None) -> None:
    with _WRITE:
        db.execute("INSERT INTO calls (op, rid, started, ended, detail) VALUES (?, ?, ?, ?, ?)",
                   (op, rid, started, time.time(), json.dumps(detail)))


def _bump(db: Any, key: str) -> int:
    with _WRITE:
        db.execute("INSERT INTO counters (key, n) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET n = n + 1", (key,))
        return int(db.execute("SELECT n FROM counters WHERE key = ?", (key,)).fetchone()[0])


def _rollout_left(db: Any, rid: str) -> int:
    row = db.execute("SELECT n FROM counters WHERE key = ?", (f"rollout:{rid}",)).fetchone()
    return int(row[0]) if row else 0


def _set_rollout(db: Any, rid: str, left: int) -> None:
    with _WRITE:
        db.execute("INSERT INTO counters (key, n) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET n = ?",
                   (f"rollout:{rid}", left, left))


def _outputs(call: ResourceCall, generation: int, old: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in call.resource.produces:
        if any(m in name for m in SECRET_MARKERS):
            # Secret-looking values are random (kept across re-runs unless the generation changes).
            keep = old.get(name)
            out[name] = keep if keep and keep.endswith(f"-g{generation}") else f"s3cr3t-{uuid.uuid4().hex}-g{generation}"
        else:
            out[name] = f"https://{call.resource.id.replace('/', '.')}.example/g{generation}"
    return out


@register(ANY, ANY)
class FakeProvider(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        rid = call.resource.id
        b = behaviour(rid, call.resource.kind)
        started = time.time()
        db = _db()
        try:
            if b.get("permanent"):
                _log(db, "ensure-failed", rid, started, "permanent")
                raise PermanentError(str(b["permanent"]))
            if _bump(db, f"ensure:{rid}") <= int(b.get("transient_failures", 0)):
                _log(db, "ensure-failed", rid, started, "transient")
                raise TransientError("HTTP 503: the service is busy (injected)")
            time.sleep(float(b.get("delay", 0)))
            with _WRITE:
                row = db.execute("SELECT generation, outputs, config, pending_until FROM resources WHERE rid = ?",
                                 (rid,)).fetchone()
                generation = int(b.get("generation", 1))
                config = json.dumps(call.resource.config, sort_keys=True)
                if row is None and float(b.get("long", 0)) > 0:
                    until = time.time() + float(b["long"])
                    db.execute("INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                               (rid, generation, "{}", json.dumps(call.settings), config, until))
                    _log(db, "create-started", rid, started)
                    return EnsureResult(pending=Pending(token={"rid": rid}, description=f"creating {rid}",
                                                        poll_after_seconds=min(float(b.get("poll_after", 0.2)), float(b["long"]))))
                if row is not None and row[3] is not None:
                    # A long creation already under way (ensure ran again): keep polling it.
                    return EnsureResult(pending=Pending(token={"rid": rid}, poll_after_seconds=float(b.get("poll_after", 0.2))))
                if row is None:
                    outputs = _outputs(call, generation, {})
                    db.execute("INSERT INTO resources VALUES (?, ?, ?, ?, ?, NULL)",
                               (rid, generation, json.dumps(outputs), json.dumps(call.settings), config))
                    _log(db, "create", rid, started)
                    return EnsureResult(action="created", outputs=outputs)
                old = json.loads(row[1])
                # Reconcile the wired settings given now (read-modify-write, as apply_settings does).
                settings = json.loads(db.execute("SELECT settings FROM resources WHERE rid = ?", (rid,)).fetchone()[0])
                merged = {**settings, **{k: v for k, v in call.settings.items() if v is not None}}
                if merged != settings:
                    db.execute("UPDATE resources SET settings = ? WHERE rid = ?", (json.dumps(merged), rid))
                    _log(db, "ensure-settings", rid, started)
                if int(row[0]) == generation and row[2] == config:
                    _log(db, "ensure-unchanged", rid, started)
                    return EnsureResult(action="unchanged", outputs=old)
                outputs = _outputs(call, generation, old)
                db.execute("UPDATE resources SET generation = ?, outputs = ?, config = ? WHERE rid = ?",
                           (generation, json.dumps(outputs), config, rid))
                _log(db, "update", rid, started)
                return EnsureResult(action="updated", outputs=outputs)
        finally:
            db.close()

    def poll(self, call: ResourceCall) -> EnsureResult:
        rid = call.resource.id
        started = time.time()
        db = _db()
        try:
            with _WRITE:
                row = db.execute("SELECT generation, pending_until FROM resources WHERE rid = ?", (rid,)).fetchone()
                if row is None:
                    raise PermanentError("the long operation's resource vanished")
                _log(db, "poll", rid, started)
                if row[1] is not None and time.time() < float(row[1]):
                    b = behaviour(rid, call.resource.kind)
                    # Like ARM's Retry-After: never later than the operation's expected end.
                    remaining = max(0.01, float(row[1]) - time.time())
                    return EnsureResult(pending=Pending(token=call.pending.token if call.pending else {},
                                                        poll_after_seconds=min(float(b.get("poll_after", 0.2)), remaining)))
                if row[1] is None:
                    return EnsureResult(action="created", outputs=json.loads(
                        db.execute("SELECT outputs FROM resources WHERE rid = ?", (rid,)).fetchone()[0]))
                outputs = _outputs(call, int(row[0]), {})
                db.execute("UPDATE resources SET outputs = ?, pending_until = NULL WHERE rid = ?", (json.dumps(outputs), rid))
                _log(db, "create", rid, started, "long")
                return EnsureResult(action="created", outputs=outputs)
        finally:
            db.close()

    def read(self, call: ResourceCall) -> ReadResult:
        db = _db()
        try:
            row = db.execute("SELECT outputs FROM resources WHERE rid = ?", (call.resource.id,)).fetchone()
            return ReadResult(exists=row is not None, outputs=json.loads(row[0]) if row else {})
        finally:
            db.close()

    def delete(self, call: ResourceCall) -> EnsureResult:
        rid = call.resource.id
        started = time.time()
        db = _db()
        try:
            if behaviour(rid, call.resource.kind).get("permanent_delete"):
                raise PermanentError("deletion refused (injected)")
            with _WRITE:
                gone = db.execute("DELETE FROM resources WHERE rid = ?", (rid,)).rowcount == 0
                _log(db, "delete-absent" if gone else "delete", rid, started)
                return EnsureResult(action="absent" if gone else "deleted")
        finally:
            db.close()

    def apply_settings(self, call: ResourceCall) -> bool | Pending:
        rid = call.resource.id
        b = behaviour(rid, call.resource.kind)
        started = time.time()
        rollout = int(b.get("apply_rollout", 0))
        wrote = bool(call.pending.token.get("wrote")) if call.pending is not None else False
        db = _db()
        def merge(current: dict[str, Any]) -> dict[str, Any]:
            merged = dict(current)
            for key, value in call.settings.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return merged

        try:
            row = db.execute("SELECT settings FROM resources WHERE rid = ?", (rid,)).fetchone()
            if row is None:
                raise PermanentError("the consumer does not exist")
            _log(db, "apply-read", rid, started)
            left = _rollout_left(db, rid)
            if left > 0:  # written settings still rolling out: every caller waits for them
                _set_rollout(db, rid, left - 1)
                _log(db, "apply-pending", rid, started)
                return Pending({"wrote": wrote}, 0.05, f"{rid}: new settings rolling out")
            if merge(json.loads(row[0])) == json.loads(row[0]):
                return wrote
            time.sleep(float(b.get("apply_delay", 0)))  # the cloud's update time, outside the lock
            with _WRITE:
                db.execute("BEGIN IMMEDIATE")
                current = json.loads(db.execute("SELECT settings FROM resources WHERE rid = ?", (rid,)).fetchone()[0])
                db.execute("UPDATE resources SET settings = ? WHERE rid = ?", (json.dumps(merge(current)), rid))
                _log(db, "apply-write", rid, started, sorted(call.settings))
                db.execute("COMMIT")
            if rollout:
                _set_rollout(db, rid, rollout)
                return Pending({"wrote": True}, 0.05, f"{rid}: new settings rolling out")
            return True
        finally:
            db.close()
