"""The host's keys, as the Functions host keeps them, and which key opens what.

- master key: everything (FUNCTION and ADMIN routes, `/admin/*`, every webhook);
- function keys: FUNCTION-level routes only;
- system keys: `durabletask_extension` opens only `/runtime/webhooks/durabletask/*` (it is the
  `code` in `statusQueryGetUri` and the other management URLs, so handing those URLs to a caller
  of the API never hands out the master key); `eventgrid_extension` opens only
  `/runtime/webhooks/eventgrid`.

A request's key is its `x-functions-key` header, else its `code` query parameter (the header wins,
as on Azure). With a state folder the generated keys are kept in `host_keys.json` there (mode
0600, the shape of the `host.json` secrets file Azure keeps in `azure-webjobs-secrets`), so a
`statusQueryGetUri` issued before a restart still works after it. A key given to the host
(`--function-key`, `FUNCTIONS_HOST_KEY`) is used as is and never written.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger("local_host")

KEYS_FILE = "host_keys.json"
DURABLE_SYSTEM_KEY = "durabletask_extension"
EVENTGRID_SYSTEM_KEY = "eventgrid_extension"


class Scope(StrEnum):
    """What a request wants to open."""

    FUNCTION = "function"  # FUNCTION-level HTTP functions
    ADMIN = "admin"  # ADMIN-level HTTP functions and /admin/*
    DURABLE = "durable"  # /runtime/webhooks/durabletask/*
    EVENTGRID = "eventgrid"  # /runtime/webhooks/eventgrid


def new_key() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: tuple[str, ...]
    system_keys: dict[str, str]
    master_generated: bool

    @property
    def durable(self) -> str:
        return self.system_keys[DURABLE_SYSTEM_KEY]

    @property
    def eventgrid(self) -> str:
        return self.system_keys[EVENTGRID_SYSTEM_KEY]

    def opening(self, scope: Scope) -> tuple[str, ...]:
        """The keys that open `scope`."""
        if scope is Scope.FUNCTION:
            return (self.master, *self.function_keys)
        if scope is Scope.DURABLE:
            return (self.master, self.durable)
        if scope is Scope.EVENTGRID:
            return (self.master, self.eventgrid)
        return (self.master,)

    def allows(self, given: str | None, scope: Scope) -> bool:
        """`given` opens `scope` (compared in constant time against every candidate)."""
        if not given:
            return False
        encoded = given.encode()
        return any(hmac.compare_digest(encoded, key.encode()) for key in self.opening(scope) if key)

    @classmethod
    def load(cls, state_dir: Path | None, master: str | None, function_keys: tuple[str, ...]) -> HostKeys:
        """The keys for a host: the given master key, else the one kept in `state_dir`, else a new
        one; system keys kept in `state_dir` or new. `state_dir=None`: nothing is kept."""
        stored = _read(state_dir / KEYS_FILE) if state_dir is not None else {}
        stored_master = (stored.get("masterKey") or {}).get("value")
        system = {k["name"]: k["value"] for k in stored.get("systemKeys", [])
                  if isinstance(k, dict) and isinstance(k.get("name"), str) and isinstance(k.get("value"), str)}
        for name in (DURABLE_SYSTEM_KEY, EVENTGRID_SYSTEM_KEY):
            system.setdefault(name, new_key())
        generated = master is None
        keys = cls(master=master or stored_master or new_key(), function_keys=function_keys,
                   system_keys=system, master_generated=generated)
        if state_dir is not None:
            _write(state_dir / KEYS_FILE, {
                "masterKey": {"name": "master", "value": keys.master} if generated else None,
                "systemKeys": [{"name": n, "value": v} for n, v in sorted(system.items())],
            })
        return keys


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); new keys are generated", path, type(exc).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Written owner-only, atomically (a host killed mid-write keeps the previous file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def request_key(headers: Any, query: Any) -> str | None:
    """The key a request carries: `x-functions-key`, else `code` (Azure reads the header first)."""
    return headers.get("x-functions-key") or query.get("code") or None
