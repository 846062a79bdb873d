"""Fixtures for the Azure provider tests: a sandbox, and the providers pointed at it through the
credentials seam (`TWIN_SANDBOX_DIR`; `TWIN_PROVIDER_MODULES` = control + azure).
Helpers live in `providers_kit.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from providers_kit import SandboxHandle, Walker, example_spec, plan_for, unique_twin

from activities.clouds import SANDBOX_DIR_SETTING
from activities.registry import PROVIDER_MODULES_SETTING
from sandbox.server import Sandbox


def _start_sandbox(path: Path, with_blob: bool = False) -> Sandbox:
    sb = Sandbox(path, profile="instant", seed=0, with_blob=with_blob, with_aws=False)
    sb.start()
    return sb


@pytest.fixture(scope="session")
def azure_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    sb = _start_sandbox(tmp_path_factory.mktemp("azure-sandbox"))
    try:
        yield SandboxHandle(sb)
    finally:
        sb.stop()


@pytest.fixture
def sandbox(azure_sandbox: SandboxHandle) -> Iterator[SandboxHandle]:
    """The session sandbox, back on the instant profile after each test."""
    try:
        yield azure_sandbox
    finally:
        azure_sandbox.profile("instant")


@pytest.fixture
def walker(sandbox: SandboxHandle) -> Callable[..., Walker]:
    def make(example: str = "azure-only", **overrides: Any) -> Walker:
        return Walker(plan_for(example_spec(example, unique_twin(), **overrides)))

    return make


@pytest.fixture(autouse=True)
def provider_settings(azure_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app settings the providers read, for each test of this folder only (never for the rest
    of the session: later folders run their own control planes in this process)."""
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(azure_sandbox.sb.state_dir))
    monkeypatch.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.azure")
