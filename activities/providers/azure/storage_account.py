"""Setup: the storage account (Functions host storage, Flex deployment packages, cold/archive
blobs). Its connection string is a secret output the Function Apps get as `AzureWebJobsStorage`."""

from __future__ import annotations

from typing import Any

from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import (
    Sku,
    StorageAccountCreateParameters,
    StorageAccountPropertiesCreateParameters,
)

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    get_or_none,
    location,
    mgmt,
    name_of,
    resource_group,
)
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall


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


def account_key(call: ResourceCall, account: str) -> str:
    result = mgmt(StorageManagementClient).storage_accounts.list_keys(resource_group(call), account)
    # The model is a Mapping, so its `keys` attribute is the Mapping method: read the JSON.
    keys = [k for k in (result.as_dict().get("keys") or []) if isinstance(k, dict) and k.get("value")]
    for k in keys:
        if (k.get("keyName") or k.get("key_name")) == "key1":
            return str(k["value"])
    if keys:
        return str(keys[0]["value"])
    raise PermanentError(f"storage account {account}: listKeys returned no key")


def account_connection_string(call: ResourceCall, account: str, current: Any) -> str:
    endpoints = current.primary_endpoints
    named = {k: getattr(endpoints, k, None) for k in ("blob", "queue", "table")} if endpoints is not None else {}
    return connection_string(account, account_key(call, account), {k: str(v) for k, v in named.items() if v})


@register("azure", "storage-account")
class StorageAccount(ArmResource):
    label = "storage account"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(StorageManagementClient)
        return get_or_none(lambda: client.storage_accounts.get_properties(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        out = []
        if current.sku is None or current.sku.name != cfg(call, "sku", "Standard_LRS"):
            out.append("sku")
        if current.kind != cfg(call, "kind", "StorageV2"):
            out.append("kind")
        if bool(current.enable_https_traffic_only) != bool(cfg(call, "https_only", True)):
            out.append("https_only")
        if (current.minimum_tls_version or "") != cfg(call, "minimum_tls_version", "TLS1_2"):
            out.append("minimum_tls_version")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        params = StorageAccountCreateParameters(
            sku=Sku(name=cfg(call, "sku", "Standard_LRS")),
            kind=cfg(call, "kind", "StorageV2"),
            location=location(call),
            properties=StorageAccountPropertiesCreateParameters(
                enable_https_traffic_only=bool(cfg(call, "https_only", True)),
                minimum_tls_version=cfg(call, "minimum_tls_version", "TLS1_2"),
                allow_blob_public_access=False,
            ),
        )
        mgmt(StorageManagementClient).storage_accounts.begin_create(
            resource_group(call), name_of(call), params, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(StorageManagementClient).storage_accounts.delete(resource_group(call), name_of(call))

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        return {Output.AZURE_STORAGE_CONNECTION_STRING: account_connection_string(call, name_of(call), current)}
