"""Hot storage in Cosmos DB (azure-cosmos imported when used).

Items: partition key `device_id`, `id` = the reading's `timestamp`, so `upsert_item` of the same
reading overwrites (idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from shared.contracts import Setting, StorageKey

_COSMOS_SYSTEM = frozenset({"id", "_rid", "_self", "_etag", "_attachments", "_ts"})


def _failed(what: str, exc: Exception) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    return UpstreamError(f"{what} failed: {status or type(exc).__name__}")


class CosmosHotStore:
    def __init__(self, endpoint: str, key: str, database: str, container: str) -> None:
        from azure.cosmos import CosmosClient

        self.name = f"{database}/{container}"
        self.container = CosmosClient(endpoint, credential=key).get_database_client(database).get_container_client(container)

    def _run(self, what: str, call: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return call()
        except AzureError as exc:
            raise _failed(f"Cosmos DB {what} on {self.name}", exc) from None

    @staticmethod
    def _reading(item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in _COSMOS_SYSTEM}

    def put(self, reading: Mapping[str, Any]) -> None:
        self._run("upsert", lambda: self.container.upsert_item({**reading, "id": reading[StorageKey.SORT]}))

    def _query(self, query: str, params: dict[str, Any], partition: str | None) -> list[dict[str, Any]]:
        parameters = [{"name": k, "value": v} for k, v in params.items()]
        if partition is None:
            items = self._run("query", lambda: list(self.container.query_items(
                query, parameters=parameters, enable_cross_partition_query=True)))
        else:
            items = self._run("query", lambda: list(self.container.query_items(
                query, parameters=parameters, partition_key=partition)))
        return [self._reading(i) for i in items]

    def query(self, device_id: str, start: str, end: str) -> list[dict[str, Any]]:
        return self._query(
            f"SELECT * FROM c WHERE c.{StorageKey.PARTITION} = @d AND c.{StorageKey.SORT} >= @s "
            f"AND c.{StorageKey.SORT} <= @e ORDER BY c.{StorageKey.SORT} ASC",
            {"@d": device_id, "@s": start, "@e": end}, device_id)

    def latest(self, device_id: str) -> dict[str, Any] | None:
        items = self._query(
            f"SELECT TOP 1 * FROM c WHERE c.{StorageKey.PARTITION} = @d ORDER BY c.{StorageKey.SORT} DESC",
            {"@d": device_id}, device_id)
        return items[0] if items else None

    def expired(self, cutoff: str) -> list[dict[str, Any]]:
        return self._query(f"SELECT * FROM c WHERE c.{StorageKey.SORT} < @c", {"@c": cutoff}, None)

    def delete(self, device_id: str, timestamp: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self.container.delete_item(item=timestamp, partition_key=device_id)
        except ResourceNotFoundError:
            return  # already moved by an earlier, interrupted run
        except AzureError as exc:
            raise _failed(f"Cosmos DB delete on {self.name}", exc) from None


def hot_store(settings: Settings) -> CosmosHotStore:
    return CosmosHotStore(
        settings.require(Setting.COSMOS_DB_ENDPOINT), settings.require(Setting.COSMOS_DB_KEY),
        settings.require(Setting.COSMOS_DB_DATABASE), settings.require(Setting.COSMOS_DB_CONTAINER))
