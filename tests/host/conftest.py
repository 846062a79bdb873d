"""Fixtures for the local host tests: a host factory (one host at a time) and a shared contract host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_helpers import APPS, KEY, HostClient, HostFactory

from local_host import LocalHost


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[HostFactory]:
    """Start hosts for apps under tests/host/apps (one at a time); all are stopped at teardown."""
    started: list[LocalHost] = []

    def make(app: str | Path, **kwargs: Any) -> tuple[LocalHost, HostClient]:
        app_dir = APPS / app if isinstance(app, str) else app
        kwargs.setdefault("state_dir", tmp_path / f"state-{len(started)}")
        kwargs.setdefault("function_key", KEY)
        host = LocalHost(app_dir=app_dir, port=0, **kwargs)
        host.start()
        started.append(host)
        return host, HostClient(host)

    yield make
    for host in reversed(started):
        host.stop()


@pytest.fixture(scope="module")
def contract_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalHost, HostClient]]:
    host = LocalHost(app_dir=APPS / "contract", state_dir=tmp_path_factory.mktemp("contract"), port=0,
                     function_key=KEY, environ={"SOME_SETTING": "from-environ"})
    host.start()
    try:
        yield host, HostClient(host)
    finally:
        host.stop()
