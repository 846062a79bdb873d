"""Fixtures for the payload-function tests: moto on 127.0.0.1, clean settings, twin info."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from payload_helpers import REGION

from shared.contracts import DigitalTwinInfo, Setting

ALL_LAYERS = ("L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5")


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No payload setting leaks in from the environment or from another test."""
    for setting in Setting:
        monkeypatch.delenv(str(setting), raising=False)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # No Docker here: Lambda invokes use moto's simple backend (set before creating functions).
    request = urllib.request.Request(f"{url}/moto-api/config", data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    try:
        yield url
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """Point boto3 (in the handlers too) at moto through the standard environment variables."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    return client


@pytest.fixture
def twin_name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def set_twin(monkeypatch: pytest.MonkeyPatch, twin_name: str) -> Callable[..., DigitalTwinInfo]:
    """`set_twin(L2="aws", L4="azure", hot_storage_days=1)`: every other layer on `default`."""

    def make(default: str = "aws", hot_storage_days: int = 30, cold_storage_days: int = 90, **layers: str) -> DigitalTwinInfo:
        providers = {layer: layers.get(layer, default) for layer in ALL_LAYERS}
        info = DigitalTwinInfo(twin_name, "DEBUG", hot_storage_days, cold_storage_days, providers)
        monkeypatch.setenv(str(Setting.DIGITAL_TWIN_INFO), info.to_json())
        return info

    return make
