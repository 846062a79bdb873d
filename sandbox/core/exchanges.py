"""Whole request/answer pairs of the Azure services whose wire format is published (ARM, Digital
Twins data plane), kept when a sandbox is started with `record_exchanges=True`.

The request log (`requestlog.py`) keeps method, URL and status of every call; this keeps bodies
too, so that a test can hold each request and answer to the provider's OpenAPI document
(`tests/conformance`). Bodies carry secrets (keys, connection strings): they stay in the
process's memory, are never written to a log, and are off unless asked for.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Answer headers the ARM protocol gives meaning to (LRO style, polling, concurrency).
KEPT_RESPONSE_HEADERS = ("Location", "Azure-AsyncOperation", "Retry-After", "ETag", "Content-Type")
MAX_EXCHANGES = 50_000


@dataclass(frozen=True)
class Exchange:
    service: str  # "arm" | "digitaltwins"
    method: str
    path: str  # as the service saw it (a mounted service's own prefix included)
    query: dict[str, str]
    request_body: Any  # parsed JSON, None when empty, the text when not JSON
    status: int
    response_headers: dict[str, str]
    response_body: Any
    # The service's path prefix on the shared server (`/digitaltwins-instances/<instance>` for ADT),
    # which the published paths do not have.
    mount: str = ""

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")

    @property
    def spec_path(self) -> str:
        """The path as the published API spells it (without the sandbox's mount prefix)."""
        return self.path[len(self.mount) :] if self.mount and self.path.startswith(self.mount) else self.path


def _parse(raw: bytes) -> Any:
    if not raw or not raw.strip():
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class ExchangeLog:
    enabled: bool = False
    _items: deque[Exchange] = field(default_factory=lambda: deque(maxlen=MAX_EXCHANGES))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def record(
        self, service: str, request: web.Request, response: web.StreamResponse, mount: str = ""
    ) -> None:
        """Keep one exchange (a no-op unless enabled). aiohttp keeps a body the handler read, so
        reading it again is free; a streamed answer has no body to keep."""
        if not self.enabled:
            return
        request_raw = await request.read()
        body = response.body if isinstance(response, web.Response) else None
        response_raw = body if isinstance(body, bytes) else b""
        exchange = Exchange(
            service=service,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            request_body=_parse(request_raw),
            status=response.status,
            response_headers={k: response.headers[k] for k in KEPT_RESPONSE_HEADERS if k in response.headers},
            response_body=_parse(response_raw),
            mount=mount,
        )
        with self._lock:
            self._items.append(exchange)

    def all(self) -> list[Exchange]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
