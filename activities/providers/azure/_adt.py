"""The Digital Twins data plane, as the models and the twin graph use it: a client for the twin's
instance, and 403s classified while the deployer's data role is not effective yet. Models and
twins carry no tags: they are their instance's, whose tags name the owner, so a client is only
made for an instance of the call's twin (`data_client` refuses another's; `existing_client`
treats it as absent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError
from azure.digitaltwins.core import DigitalTwinsClient
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient

from activities.providers.azure._common import clouds, get_or_none, mgmt
from activities.providers.typed import is_ours, require_own
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import DtdlModelsConfig, TwinGraphConfig

T = TypeVar("T")


def _instance(config: DtdlModelsConfig | TwinGraphConfig) -> Any:
    mgmt_client = mgmt(AzureDigitalTwinsManagementClient)
    return get_or_none(lambda: mgmt_client.digital_twins.get(config.resource_group, config.instance))


def _client(config: DtdlModelsConfig | TwinGraphConfig, inst: Any) -> DigitalTwinsClient:
    if not inst.host_name:
        raise TransientError(f"Digital Twins instance {config.instance}: no hostName yet (still provisioning)")
    cl = clouds()
    return DigitalTwinsClient(f"https://{inst.host_name}", cl.azure_credential(), **cl.azure_client_kwargs())


def data_client(call: ResourceCall, config: DtdlModelsConfig | TwinGraphConfig) -> DigitalTwinsClient:
    """The data-plane client of `config.instance`: PermanentError when the instance is gone,
    `ForeignObject` when it is another twin's."""
    inst = _instance(config)
    if inst is None:
        raise PermanentError(f"Digital Twins instance {config.instance} does not exist: deploy L4's instance first")
    require_own(call, config, inst.tags, f"Digital Twins instance {config.instance}")
    return _client(config, inst)


def existing_client(call: ResourceCall, config: DtdlModelsConfig | TwinGraphConfig) -> DigitalTwinsClient | None:
    """The data-plane client, or None when the instance is gone (and everything in it) or is
    another twin's (nothing in it is this twin's)."""
    inst = _instance(config)
    if inst is None or not is_ours(call, config, inst.tags):
        return None
    return _client(config, inst)


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
