"""Helpers for the local host tests: a synchronous HTTP client and the host factory type.

A uniquely named module (not `conftest`), so test modules can import it while other test folders'
conftest modules are loaded too."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_host import LocalHost

APPS = Path(__file__).parent / "apps"
KEY = "test-key"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HostClient:
    """Plain HTTP against a running host (the SDK client itself runs inside the host's loop)."""

    def __init__(self, host: LocalHost) -> None:
        self.host = host
        self.base = host.base_url

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def durable(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        sep = "&" if "?" in path else "?"
        return self.request(method, f"/runtime/webhooks/durabletask/{path}{sep}code={KEY}", body, headers)

    def start(self, orchestrator: str, input_value: Any = None, instance_id: str | None = None) -> str:
        path = f"/api/orchestrators/{orchestrator}" + (f"/{instance_id}" if instance_id else "")
        reply = self.request("POST", path, input_value)
        assert reply.status == 202, reply.body
        return str(reply.json()["id"])

    def status(self, instance_id: str, **query: str) -> Reply:
        qs = "".join(f"&{k}={v}" for k, v in query.items())
        return self.durable("GET", f"instances/{instance_id}?showInput=true{qs}")

    def wait(self, instance_id: str, timeout: float = 20.0,
             until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        done = until or (lambda s: s["runtimeStatus"] not in ("Running", "Pending", "ContinuedAsNew"))
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            reply = self.status(instance_id)
            if reply.status in (200, 202):
                last = reply.json()
                if done(last):
                    return last
            time.sleep(0.05)
        raise AssertionError(f"instance {instance_id} did not settle within {timeout}s; last status: {last}")

    def wait_history(self, instance_id: str, predicate: Callable[[list[dict[str, Any]]], bool],
                     timeout: float = 10.0) -> list[dict[str, Any]]:
        assert self.host.engine is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.host.engine.history(instance_id)
            if predicate(events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"history of {instance_id} never matched")


HostFactory = Callable[..., tuple[LocalHost, HostClient]]
