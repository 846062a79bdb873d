"""L3 hot: the Cosmos DB SQL database and its container, partitioned by `/device_id`
(the storage key of `shared.contracts`). Both are long-running; the container follows the
database. Outputs: the database and container names."""

from __future__ import annotations

from typing import Any

from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import (
    ContainerPartitionKey,
    SqlContainerCreateUpdateParameters,
    SqlContainerCreateUpdateProperties,
    SqlContainerResource,
    SqlDatabaseCreateUpdateParameters,
    SqlDatabaseCreateUpdateProperties,
    SqlDatabaseResource,
)

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.azure import CosmosContainerConfig


class _Database(ArmResource[CosmosContainerConfig]):
    """The container's database, walked first with the container's configuration."""

    model = CosmosContainerConfig
    label = "Cosmos DB database"
    tagged = False  # the resource group's

    def get(self, call: ResourceCall, config: CosmosContainerConfig) -> Any:
        sql = mgmt(CosmosDBManagementClient).sql_resources
        return get_or_none(lambda: sql.get_sql_database(config.resource_group, config.account, config.database))

    def put(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> None:
        mgmt(CosmosDBManagementClient).sql_resources.begin_create_update_sql_database(
            config.resource_group, config.account, config.database, SqlDatabaseCreateUpdateParameters(
                properties=SqlDatabaseCreateUpdateProperties(resource=SqlDatabaseResource(id=config.database))),
            polling=False,
        )

    def remove(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> None:
        mgmt(CosmosDBManagementClient).sql_resources.begin_delete_sql_database(
            config.resource_group, config.account, config.database, polling=False)


_DATABASE = _Database()


@register("azure", "cosmos-container")
class CosmosContainer(ArmResource[CosmosContainerConfig]):
    model = CosmosContainerConfig
    label = "Cosmos DB container"
    tagged = False  # the resource group's

    def get(self, call: ResourceCall, config: CosmosContainerConfig) -> Any:
        sql = mgmt(CosmosDBManagementClient).sql_resources
        return get_or_none(lambda: sql.get_sql_container(config.resource_group, config.account, config.database,
                                                         config.name))

    def differs(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> list[str]:
        resource = current.resource
        paths = list(resource.partition_key.paths or []) if resource is not None and resource.partition_key else []
        if paths != [config.partition_key_path]:
            raise PermanentError(
                f"Cosmos DB container {config.name} is partitioned by {paths}, not "
                f"[{config.partition_key_path}]: a partition key cannot change; move the data and delete it"
            )
        ttl = resource.default_ttl if resource is not None else None
        return [] if ttl == config.default_ttl else ["default_ttl"]

    def put(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> None:
        params = SqlContainerCreateUpdateParameters(properties=SqlContainerCreateUpdateProperties(
            resource=SqlContainerResource(
                id=config.name,
                partition_key=ContainerPartitionKey(paths=[config.partition_key_path], kind="Hash"),
                default_ttl=config.default_ttl,
            )))
        mgmt(CosmosDBManagementClient).sql_resources.begin_create_update_sql_container(
            config.resource_group, config.account, config.database, config.name, params, polling=False
        )

    def remove(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> None:
        mgmt(CosmosDBManagementClient).sql_resources.begin_delete_sql_container(
            config.resource_group, config.account, config.database, config.name, polling=False)

    def outputs(self, call: ResourceCall, config: CosmosContainerConfig, current: Any) -> dict[str, str]:
        return {Output.COSMOS_DB_DATABASE: config.database, Output.COSMOS_DB_CONTAINER: config.name}

    # The database comes first: its own walk, then the container's.
    def ensure_config(self, call: ResourceCall, config: CosmosContainerConfig) -> EnsureResult:
        first = _DATABASE.ensure_config(call, config)
        if first.pending is not None:
            return self._wrap(first, "database", first.action)
        return self._container(call, config, first.action)

    def poll_config(self, call: ResourceCall, config: CosmosContainerConfig) -> EnsureResult:
        token = dict(call.pending.token) if call.pending is not None else {}
        if token.get("part") == "database":
            result = _DATABASE.poll_config(call, config)
            if result.pending is not None:
                return self._wrap(result, "database", token.get("db_action", "updated"))
            return self._container(call, config, token.get("db_action", "updated"))
        return super().poll_config(call, config)

    def _container(self, call: ResourceCall, config: CosmosContainerConfig, db_action: Action) -> EnsureResult:
        result = super().ensure_config(call, config)
        if result.done and result.action == "unchanged" and db_action != "unchanged":
            return EnsureResult("updated", result.outputs)
        return result

    def _wrap(self, result: EnsureResult, part: str, db_action: str) -> EnsureResult:
        assert result.pending is not None
        pending = type(result.pending)(token={**result.pending.token, "part": part, "db_action": db_action},
                                       poll_after_seconds=result.pending.poll_after_seconds,
                                       description=result.pending.description)
        return EnsureResult(result.action, pending=pending)

    # Delete: the container only; the database goes with the account (another layer may share it).
