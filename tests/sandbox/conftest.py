"""Fixtures for the sandbox's tests (shared by the arm, adt and aws parts).

- `sandbox`: one running `Sandbox` for the whole session (no Azurite, no GCP: tests/sandbox/test_gcp_*
  start their own; AWS if available), instant profile. Tests sharing it must use unique names (`unique_name`).
- `sandbox_factory`: start private sandboxes (another profile, a seed, with blob); each one is
  stopped when the test ends.
- `deployer_credential`, `arm_kwargs`, `mgmt_client`: build real azure-mgmt clients pointed at a
  sandbox (`base_url`, `connection_verify`, `polling_interval=0`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox

T = TypeVar("T")
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # The services alone: deployed Function App packages are not run here (tests/runtime does that).
    sb = Sandbox(tmp_path_factory.mktemp("sandbox-session"), profile="instant", seed=0, with_blob=False,
                 with_function_apps=False, with_gcp=False)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def make(
        profile: str = "instant", seed: int = 0, with_blob: bool = False, with_aws: bool = False,
        with_function_apps: bool = False, with_gcp: bool = False,
    ) -> Sandbox:
        sb = Sandbox(
            tmp_path / f"sandbox-{len(started) + 1}",
            profile=profile,
            seed=seed,
            with_blob=with_blob,
            with_aws=with_aws,
            with_function_apps=with_function_apps,
            with_gcp=with_gcp,
        )
        sb.start()
        started.append(sb)
        return sb

    try:
        yield make
    finally:
        for sb in reversed(started):
            sb.stop()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """`unique_name("rg")` -> `rg-1a2b3c4-7`: unique within the session, DNS-safe, lower case."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:7]}-{next(_counter)}"

    return make


def deployer(sb: Sandbox) -> SandboxCredential:
    return SandboxCredential(
        sb.endpoints["azure"]["deployer_principal_id"], sb.endpoints["azure"]["tenant_id"]
    )


@pytest.fixture
def deployer_credential(sandbox: Sandbox) -> SandboxCredential:
    return deployer(sandbox)


def arm_client_kwargs(sb: Sandbox) -> dict[str, Any]:
    return {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}


@pytest.fixture
def arm_kwargs(sandbox: Sandbox) -> dict[str, Any]:
    return arm_client_kwargs(sandbox)


def make_mgmt_client(sb: Sandbox, cls: type[T], credential: Any = None, **kwargs: Any) -> T:
    """`cls(credential, subscription_id, base_url=..., connection_verify=..., polling_interval=0)`."""
    cred = credential if credential is not None else deployer(sb)
    return cls(cred, sb.endpoints["azure"]["subscription_id"], **{**arm_client_kwargs(sb), **kwargs})  # type: ignore[call-arg]


@pytest.fixture
def mgmt_client(sandbox: Sandbox) -> Callable[..., Any]:
    """`mgmt_client(WebSiteManagementClient)` against the session sandbox."""

    def make(cls: type[T], credential: Any = None, **kwargs: Any) -> T:
        return make_mgmt_client(sandbox, cls, credential, **kwargs)

    return make
