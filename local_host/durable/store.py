"""SQLite persistence for instances, histories, inboxes (incl. timers), activity work and entities.

One connection, used only from the host's event-loop thread. Every state change of an episode
(history appended, inbox messages consumed, new messages and work items, instance row) is one
transaction, so a host killed with SIGKILL restarts from a consistent point: unconsumed inbox
messages are replayed and outstanding work items run again (at-least-once, as on Azure).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS inbox (
    msg_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    visible_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox (instance_id, msg_id);
CREATE INDEX IF NOT EXISTS inbox_by_time ON inbox (visible_at);
CREATE TABLE IF NOT EXISTS work (
    work_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    scheduled_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT,
    last_modified TEXT NOT NULL
);
"""


@dataclass
class Instance:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    created_time: str
    last_updated_time: str
    output: str | None = None
    custom_status: str | None = None
    parent: dict[str, Any] | None = None
    # Host bookkeeping: next_id, leaves, retry_tasks, retry_timers, timers (see scheduler).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class InboxMessage:
    msg_id: int
    instance_id: str
    execution_id: str | None
    visible_at: float
    event: dict[str, Any]


@dataclass
class WorkItem:
    work_id: int
    instance_id: str
    execution_id: str
    task_id: int
    kind: str
    name: str
    input: str | None
    scheduled_time: str


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only power loss can drop the last commits).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- instances -------------------------------------------------------------------------------

    def put_instance(self, inst: Instance) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (inst.instance_id, inst.name, inst.execution_id, inst.status, inst.input, inst.output,
             inst.custom_status, inst.created_time, inst.last_updated_time,
             json.dumps(inst.parent) if inst.parent else None, json.dumps(inst.state)))

    def get_instance(self, instance_id: str) -> Instance | None:
        row = self._db.execute("SELECT * FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
        return self._row_to_instance(row) if row else None

    def list_instances(self, *, created_from: str | None = None, created_to: str | None = None,
                       statuses: list[str] | None = None, prefix: str | None = None) -> list[Instance]:
        sql = "SELECT * FROM instances WHERE 1=1"
        args: list[Any] = []
        if created_from:
            sql += " AND created_time >= ?"
            args.append(created_from)
        if created_to:
            sql += " AND created_time <= ?"
            args.append(created_to)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        if prefix:
            sql += " AND substr(instance_id, 1, ?) = ?"
            args.extend([len(prefix), prefix])
        sql += " ORDER BY created_time, instance_id"
        return [self._row_to_instance(r) for r in self._db.execute(sql, args).fetchall()]

    def instance_ids_with_status(self, statuses: list[str]) -> list[str]:
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(f"SELECT instance_id FROM instances WHERE status IN ({marks})", statuses)
        return [r[0] for r in rows.fetchall()]

    def delete_instance(self, instance_id: str) -> None:
        for table in ("instances", "history", "inbox", "work"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))

    @staticmethod
    def _row_to_instance(row: tuple[Any, ...]) -> Instance:
        return Instance(instance_id=row[0], name=row[1], execution_id=row[2], status=row[3], input=row[4],
                        output=row[5], custom_status=row[6], created_time=row[7], last_updated_time=row[8],
                        parent=json.loads(row[9]) if row[9] else None, state=json.loads(row[10]))

    # -- history ---------------------------------------------------------------------------------

    def load_history(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
        return [json.loads(r[0]) for r in rows.fetchall()]

    def append_history(self, instance_id: str, start_seq: int, events: list[dict[str, Any]]) -> None:
        self._db.executemany("INSERT INTO history VALUES (?,?,?)",
                             [(instance_id, start_seq + i, json.dumps(e)) for i, e in enumerate(events)])

    def clear_history(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))

    # -- inbox -----------------------------------------------------------------------------------

    def add_message(self, instance_id: str, execution_id: str | None, visible_at: float,
                    evt: dict[str, Any]) -> int:
        cur = self._db.execute("INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (?,?,?,?)",
                               (instance_id, execution_id, visible_at, json.dumps(evt)))
        return int(cur.lastrowid or 0)

    def visible_messages(self, instance_id: str, now: float) -> list[InboxMessage]:
        rows = self._db.execute(
            "SELECT * FROM inbox WHERE instance_id=? AND visible_at<=? ORDER BY visible_at, msg_id",
            (instance_id, now)).fetchall()
        return [InboxMessage(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def delete_messages(self, msg_ids: list[int]) -> None:
        self._db.executemany("DELETE FROM inbox WHERE msg_id=?", [(m,) for m in msg_ids])

    def delete_inbox(self, instance_id: str, keep_event_raised: bool = False) -> None:
        if keep_event_raised:
            # Continue-as-new carries unprocessed external events over to the new execution.
            self._db.execute("DELETE FROM inbox WHERE instance_id=? AND execution_id IS NOT NULL",
                             (instance_id,))
        else:
            self._db.execute("DELETE FROM inbox WHERE instance_id=?", (instance_id,))

    def instances_with_visible_messages(self, now: float) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT instance_id FROM inbox WHERE visible_at<=?", (now,))
        return [r[0] for r in rows.fetchall()]

    def next_visible_at(self, now: float) -> float | None:
        row = self._db.execute("SELECT MIN(visible_at) FROM inbox WHERE visible_at>?", (now,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- activity work ---------------------------------------------------------------------------

    def add_work(self, instance_id: str, execution_id: str, task_id: int, kind: str, name: str,
                 input_text: str | None, scheduled_time: str) -> WorkItem:
        cur = self._db.execute(
            "INSERT INTO work (instance_id, execution_id, task_id, kind, name, input, scheduled_time) "
            "VALUES (?,?,?,?,?,?,?)", (instance_id, execution_id, task_id, kind, name, input_text, scheduled_time))
        return WorkItem(int(cur.lastrowid or 0), instance_id, execution_id, task_id, kind, name, input_text,
                        scheduled_time)

    def delete_work(self, work_id: int) -> bool:
        return self._db.execute("DELETE FROM work WHERE work_id=?", (work_id,)).rowcount > 0

    def all_work(self) -> list[WorkItem]:
        return [WorkItem(*r) for r in self._db.execute("SELECT * FROM work ORDER BY work_id").fetchall()]

    # -- entities --------------------------------------------------------------------------------

    def get_entity(self, entity_id: str) -> tuple[str | None, str] | None:
        row = self._db.execute("SELECT state, last_modified FROM entities WHERE entity_id=?",
                               (entity_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def put_entity(self, entity_id: str, name: str, key: str, state: str | None, when: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?)", (entity_id, name, key, state, when))

    def delete_entity(self, entity_id: str) -> None:
        self._db.execute("DELETE FROM entities WHERE entity_id=?", (entity_id,))

    def list_entities(self, name: str) -> list[tuple[str, str | None, str]]:
        rows = self._db.execute("SELECT key, state, last_modified FROM entities WHERE name=? ORDER BY key",
                                (name,))
        return [(r[0], r[1], r[2]) for r in rows.fetchall()]
