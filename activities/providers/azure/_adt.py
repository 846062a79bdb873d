"""The Digital Twins data plane, as the models and the twin graph use it: a client for the twin's
instance, and 403s classified while the deployer's data role is not effective yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import HttpResponseError
from azure.digitaltwins.core import DigitalTwinsClient

from activities.providers.azure._common import clouds
from activities.providers.azure.digital_twins import instance_url
from shared.engine.errors import PermanentError, TransientError
from shared.resources.azure import DtdlModelsConfig, TwinGraphConfig

T = TypeVar("T")


def data_client(config: DtdlModelsConfig | TwinGraphConfig) -> DigitalTwinsClient:
    """The data-plane client of `config.instance` (PermanentError when the instance is gone)."""
    url = instance_url(config.resource_group, config.instance)
    cl = clouds()
    return DigitalTwinsClient(url, cl.azure_credential(), **cl.azure_client_kwargs())


def existing_client(config: DtdlModelsConfig | TwinGraphConfig) -> DigitalTwinsClient | None:
    """The data-plane client, or None when the instance is gone (and everything in it)."""
    try:
        return data_client(config)
    except PermanentError:
        return None


def data_plane(what: str, fn: Callable[[], T]) -> T:
    """Run a data-plane call; a 403 is the role assignment not being effective yet (it takes
    minutes on Azure), so it is transient, not a permission to fix by hand."""
    try:
        return fn()
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise TransientError(
                f"Digital Twins refused to {what} (403): the 'Azure Digital Twins Data Owner' role of the "
                "deployer is not effective yet"
            ) from exc
        raise
