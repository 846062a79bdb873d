"""L3 hot: the Cosmos DB account (serverless, Session consistency, one region).
Outputs: its document endpoint and primary key (secret)."""

from __future__ import annotations

from typing import Any

from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import (
    Capability,
    ConsistencyPolicy,
    DatabaseAccountCreateUpdateParameters,
    DatabaseAccountCreateUpdateProperties,
    Location,
)

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    enum_str,
    get_or_none,
    location,
    mgmt,
    name_of,
    resource_group,
)
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall


@register("azure", "cosmos-account")
class CosmosAccount(ArmResource):
    label = "Cosmos DB account"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(CosmosDBManagementClient)
        return get_or_none(lambda: client.database_accounts.get(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        out = []
        have = {str(c.name) for c in (current.capabilities or [])}
        if not set(cfg(call, "capabilities", [])) <= have:
            out.append("capabilities")
        level = enum_str(current.consistency_policy.default_consistency_level) if current.consistency_policy else ""
        if level.lower() != str(cfg(call, "consistency", "Session")).lower():
            out.append("consistency")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        capabilities = set(cfg(call, "capabilities", []))
        if current is not None:
            capabilities |= {str(c.name) for c in (current.capabilities or [])}
        params = DatabaseAccountCreateUpdateParameters(
            location=location(call),
            kind="GlobalDocumentDB",
            properties=DatabaseAccountCreateUpdateProperties(
                locations=[Location(location_name=location(call), failover_priority=0, is_zone_redundant=False)],
                capabilities=[Capability(name=c) for c in sorted(capabilities)],
                consistency_policy=ConsistencyPolicy(default_consistency_level=cfg(call, "consistency", "Session")),
            ),
        )
        mgmt(CosmosDBManagementClient).database_accounts.begin_create_or_update(
            resource_group(call), name_of(call), params, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(CosmosDBManagementClient).database_accounts.begin_delete(resource_group(call), name_of(call), polling=False)

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        endpoint = current.document_endpoint
        if not endpoint:
            raise TransientError(f"Cosmos DB account {name_of(call)}: no documentEndpoint yet")
        keys = mgmt(CosmosDBManagementClient).database_accounts.list_keys(resource_group(call), name_of(call))
        return {Output.COSMOS_DB_ENDPOINT: str(endpoint), Output.COSMOS_DB_KEY: str(keys.primary_master_key)}
