"""Setup: the storage account (Functions host storage, Flex deployment packages, cold/archive
blobs). Its connection string is a secret output the Function Apps get as `AzureWebJobsStorage`;
an account without shared keys (the control plane's own) yields its service endpoints instead."""

from __future__ import annotations

from typing import Any

from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import (
    Sku,
    StorageAccountCreateParameters,
    StorageAccountPropertiesCreateParameters,
)

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.infrastructure import InstallOutput
from shared.engine.types import ResourceCall
from shared.resources.azure import StorageAccountConfig

# Outputs naming one of the account's service endpoints (identity-based access needs no key).
ENDPOINT_OUTPUTS = {
    InstallOutput.STORAGE_BLOB_ENDPOINT: "blob",
    InstallOutput.STORAGE_QUEUE_ENDPOINT: "queue",
    InstallOutput.STORAGE_TABLE_ENDPOINT: "table",
}


def connection_string(account: str, key: str, endpoints: dict[str, str] | None = None) -> str:
    """The account's connection string, naming its service endpoints when ARM gives them (so it
    also works for clouds whose endpoints are not `*.core.windows.net`)."""
    parts = [f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key}"]
    named = {k: v for k, v in (endpoints or {}).items() if k in ("blob", "queue", "table") and v}
    if named:
        parts += [f"{k.capitalize()}Endpoint={v.rstrip('/')}" for k, v in sorted(named.items())]
    else:
        parts.append("EndpointSuffix=core.windows.net")
    return ";".join(parts)


def account_key(resource_group: str, account: str) -> str:
    result = mgmt(StorageManagementClient).storage_accounts.list_keys(resource_group, account)
    # The model is a Mapping, so its `keys` attribute is the Mapping method: read the JSON.
    keys = [k for k in (result.as_dict().get("keys") or []) if isinstance(k, dict) and k.get("value")]
    for k in keys:
        if (k.get("keyName") or k.get("key_name")) == "key1":
            return str(k["value"])
    if keys:
        return str(keys[0]["value"])
    raise PermanentError(f"storage account {account}: listKeys returned no key")


def account_connection_string(resource_group: str, account: str, current: Any) -> str:
    endpoints = current.primary_endpoints
    named = {k: getattr(endpoints, k, None) for k in ("blob", "queue", "table")} if endpoints is not None else {}
    return connection_string(account, account_key(resource_group, account), {k: str(v) for k, v in named.items() if v})


@register("azure", "storage-account")
class StorageAccount(ArmResource[StorageAccountConfig]):
    model = StorageAccountConfig
    label = "storage account"

    def get(self, call: ResourceCall, config: StorageAccountConfig) -> Any:
        client = mgmt(StorageManagementClient)
        return get_or_none(lambda: client.storage_accounts.get_properties(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: StorageAccountConfig, current: Any) -> list[str]:
        out = []
        if current.sku is None or current.sku.name != config.sku:
            out.append("sku")
        if current.kind != config.kind:
            out.append("kind")
        if bool(current.enable_https_traffic_only) != config.https_only:
            out.append("https_only")
        if (current.minimum_tls_version or "") != config.minimum_tls_version:
            out.append("minimum_tls_version")
        # ARM leaves `allowSharedKeyAccess` null until it is set: null means allowed.
        if (current.allow_shared_key_access is not False) != config.shared_key_access:
            out.append("allow_shared_key_access")
        return out

    def put(self, call: ResourceCall, config: StorageAccountConfig, current: Any) -> None:
        params = StorageAccountCreateParameters(
            sku=Sku(name=config.sku),
            kind=config.kind,
            location=config.location,
            tags=self.owned_tags(call, config, current),
            properties=StorageAccountPropertiesCreateParameters(
                enable_https_traffic_only=config.https_only,
                minimum_tls_version=config.minimum_tls_version,
                allow_blob_public_access=False,
                allow_shared_key_access=None if config.shared_key_access else False,
            ),
        )
        mgmt(StorageManagementClient).storage_accounts.begin_create(
            config.resource_group, config.name, params, polling=False
        )

    def remove(self, call: ResourceCall, config: StorageAccountConfig, current: Any) -> None:
        mgmt(StorageManagementClient).storage_accounts.delete(config.resource_group, config.name)

    def outputs(self, call: ResourceCall, config: StorageAccountConfig, current: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        endpoints = current.primary_endpoints
        for name in call.resource.produces:
            if name == Output.AZURE_STORAGE_CONNECTION_STRING:
                if not config.shared_key_access:
                    raise PermanentError(f"storage account {config.name} allows no shared key: it has no connection string")
                out[name] = account_connection_string(config.resource_group, config.name, current)
            elif name in ENDPOINT_OUTPUTS and endpoints is not None:
                out[name] = str(getattr(endpoints, ENDPOINT_OUTPUTS[name]) or "")
        return out
