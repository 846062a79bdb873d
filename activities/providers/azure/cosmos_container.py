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

from activities.providers.azure._common import ArmResource, cfg, get_or_none, mgmt, name_of, resource_group
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall


def _names(call: ResourceCall) -> tuple[str, str, str, str]:
    return resource_group(call), str(cfg(call, "account")), str(cfg(call, "database")), name_of(call)


class _Database(ArmResource):
    label = "Cosmos DB database"

    def get(self, call: ResourceCall) -> Any:
        rg, account, db, _ = _names(call)
        sql = mgmt(CosmosDBManagementClient).sql_resources
        return get_or_none(lambda: sql.get_sql_database(rg, account, db))

    def put(self, call: ResourceCall, current: Any) -> None:
        rg, account, db, _ = _names(call)
        mgmt(CosmosDBManagementClient).sql_resources.begin_create_update_sql_database(
            rg, account, db, SqlDatabaseCreateUpdateParameters(
                properties=SqlDatabaseCreateUpdateProperties(resource=SqlDatabaseResource(id=db))), polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        rg, account, db, _ = _names(call)
        mgmt(CosmosDBManagementClient).sql_resources.begin_delete_sql_database(rg, account, db, polling=False)


_DATABASE = _Database()


@register("azure", "cosmos-container")
class CosmosContainer(ArmResource):
    label = "Cosmos DB container"

    def get(self, call: ResourceCall) -> Any:
        rg, account, db, container = _names(call)
        sql = mgmt(CosmosDBManagementClient).sql_resources
        return get_or_none(lambda: sql.get_sql_container(rg, account, db, container))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        resource = current.resource
        paths = list(resource.partition_key.paths or []) if resource is not None and resource.partition_key else []
        if paths != [cfg(call, "partition_key_path")]:
            raise PermanentError(
                f"Cosmos DB container {name_of(call)} is partitioned by {paths}, not "
                f"[{cfg(call, 'partition_key_path')}]: a partition key cannot change; move the data and delete it"
            )
        ttl = resource.default_ttl if resource is not None else None
        return [] if ttl == cfg(call, "default_ttl", -1) else ["default_ttl"]

    def put(self, call: ResourceCall, current: Any) -> None:
        rg, account, db, container = _names(call)
        params = SqlContainerCreateUpdateParameters(properties=SqlContainerCreateUpdateProperties(
            resource=SqlContainerResource(
                id=container,
                partition_key=ContainerPartitionKey(paths=[str(cfg(call, "partition_key_path"))], kind="Hash"),
                default_ttl=int(cfg(call, "default_ttl", -1)),
            )))
        mgmt(CosmosDBManagementClient).sql_resources.begin_create_update_sql_container(
            rg, account, db, container, params, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        rg, account, db, container = _names(call)
        mgmt(CosmosDBManagementClient).sql_resources.begin_delete_sql_container(rg, account, db, container,
                                                                                 polling=False)

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        _, _, db, container = _names(call)
        return {Output.COSMOS_DB_DATABASE: db, Output.COSMOS_DB_CONTAINER: container}

    # The database comes first: its own walk, then the container's.
    def ensure(self, call: ResourceCall) -> EnsureResult:
        first = _DATABASE.ensure(call)
        if first.pending is not None:
            return self._wrap(first, "database", first.action)
        return self._container(call, first.action)

    def poll(self, call: ResourceCall) -> EnsureResult:
        token = dict(call.pending.token) if call.pending is not None else {}
        if token.get("part") == "database":
            result = _DATABASE.poll(call)
            if result.pending is not None:
                return self._wrap(result, "database", token.get("db_action", "updated"))
            return self._container(call, token.get("db_action", "updated"))
        return super().poll(call)

    def _container(self, call: ResourceCall, db_action: Action) -> EnsureResult:
        result = super().ensure(call)
        if result.done and result.action == "unchanged" and db_action != "unchanged":
            return EnsureResult("updated", result.outputs)
        return result

    def _wrap(self, result: EnsureResult, part: str, db_action: str) -> EnsureResult:
        assert result.pending is not None
        pending = type(result.pending)(token={**result.pending.token, "part": part, "db_action": db_action},
                                       poll_after_seconds=result.pending.poll_after_seconds,
                                       description=result.pending.description)
        return EnsureResult(result.action, pending=pending)

    def delete(self, call: ResourceCall) -> EnsureResult:
        # The container only; the database goes with the account (another layer may share it).
        return super().delete(call)
