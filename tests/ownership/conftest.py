"""One sandbox (AWS and Azure) for the ownership tests, and the providers pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from activities.clouds import SANDBOX_DIR_SETTING
from activities.registry import PROVIDER_MODULES_SETTING
from sandbox.server import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("ownership-sandbox"), profile="instant", seed=0, with_blob=False,
                 with_aws=True, with_function_apps=False, with_gcp=False)
    sb.start()
    try:
        yield sb
    finally:
        try:
            if sb.aws is not None:
                sb.aws.reset()  # moto's state is process-wide: leave none for later sandboxes
        finally:
            sb.stop()


@pytest.fixture(autouse=True)
def providers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(sandbox.state_dir))
    monkeypatch.setenv(PROVIDER_MODULES_SETTING,
                       "activities.providers.control,activities.providers.azure,activities.providers.aws")
