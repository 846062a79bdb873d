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

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import CosmosAccountConfig


@register("azure", "cosmos-account")
class CosmosAccount(ArmResource[CosmosAccountConfig]):
    model = CosmosAccountConfig
    label = "Cosmos DB account"

    def get(self, call: ResourceCall, config: CosmosAccountConfig) -> Any:
        client = mgmt(CosmosDBManagementClient)
        return get_or_none(lambda: client.database_accounts.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: CosmosAccountConfig, current: Any) -> list[str]:
        out = []
        have = {str(c.name) for c in (current.capabilities or [])}
        if not set(config.capabilities) <= have:
            out.append("capabilities")
        level = enum_str(current.consistency_policy.default_consistency_level) if current.consistency_policy else ""
        if level.lower() != config.consistency.lower():
            out.append("consistency")
        return out

    def put(self, call: ResourceCall, config: CosmosAccountConfig, current: Any) -> None:
        capabilities = set(config.capabilities)
        if current is not None:
            capabilities |= {str(c.name) for c in (current.capabilities or [])}
        params = DatabaseAccountCreateUpdateParameters(
            location=config.location,
            kind="GlobalDocumentDB",
            tags=self.owned_tags(call, config, current),
            properties=DatabaseAccountCreateUpdateProperties(
                locations=[Location(location_name=config.location, failover_priority=0, is_zone_redundant=False)],
                capabilities=[Capability(name=c) for c in sorted(capabilities)],
                consistency_policy=ConsistencyPolicy(default_consistency_level=config.consistency),
            ),
        )
        mgmt(CosmosDBManagementClient).database_accounts.begin_create_or_update(
            config.resource_group, config.name, params, polling=False
        )

    def remove(self, call: ResourceCall, config: CosmosAccountConfig, current: Any) -> None:
        mgmt(CosmosDBManagementClient).database_accounts.begin_delete(config.resource_group, config.name,
                                                                       polling=False)

    def outputs(self, call: ResourceCall, config: CosmosAccountConfig, current: Any) -> dict[str, str]:
        endpoint = current.document_endpoint
        if not endpoint:
            raise TransientError(f"Cosmos DB account {config.name}: no documentEndpoint yet")
        keys = mgmt(CosmosDBManagementClient).database_accounts.list_keys(config.resource_group, config.name)
        return {Output.COSMOS_DB_ENDPOINT: str(endpoint), Output.COSMOS_DB_KEY: str(keys.primary_master_key)}
