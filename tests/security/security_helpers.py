"""The control plane's API on the local host for the security tests: the project's blueprints with
the engine tests' fake provider (`tests/engine/app`), so valid specs deploy in milliseconds.

A uniquely named module (not `conftest`), like the other test folders' helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_helpers import APP, KEY, Engine, engine_environ, free_port, http  # noqa: E402

from local_host import LocalHost  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["KEY", "ROOT", "Engine", "api_engine", "http"]


@contextmanager
def api_engine(tmp: Path, options: dict[str, Any] | None = None) -> Iterator[Engine]:
    port = free_port()
    host = LocalHost(app_dir=APP, state_dir=tmp / "host", port=port, function_key=KEY,
                     environ=engine_environ(tmp, port, options))
    host.start()
    try:
        yield Engine(host.base_url, KEY, tmp / "fake.sqlite", tmp / "fake.json", tmp / "events.jsonl")
    finally:
        host.stop()
