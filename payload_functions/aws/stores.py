"""Hot storage in DynamoDB and cold/archive storage in S3 (boto3 imported when used).

DynamoDB items are keyed `device_id` (hash) + `timestamp` (range), so `put_item` of the same
reading is an idempotent overwrite. Floats travel as Decimal, as DynamoDB requires.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from payload_functions.aws.runtime import client
from payload_functions.common.errors import UpstreamError
from shared.contracts import StorageKey

COLD_STORAGE_CLASS = "STANDARD_IA"
ARCHIVE_STORAGE_CLASS = "DEEP_ARCHIVE"


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _failed(what: str, exc: Exception) -> UpstreamError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return UpstreamError(f"{what} failed: {code or type(exc).__name__}")


class DynamoHotStore:
    def __init__(self, table: str) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self.table = table
        self.db = client("dynamodb")
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def _item(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(_to_dynamo(v)) for k, v in reading.items()}

    def _reading(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _from_dynamo(self._de.deserialize(v)) for k, v in item.items()}

    def _call(self, what: str, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.db, op)(TableName=self.table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _failed(f"DynamoDB {what} on {self.table}", exc) from None

    def put(self, reading: Mapping[str, Any]) -> None:
        self._call("put_item", "put_item", Item=self._item(reading))

    def _pages(self, op: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: Any = None
        while True:
            page = self._call(op, op, **kwargs, **({"ExclusiveStartKey": start} if start else {}))
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def query(self, device_id: str, start: str, end: str) -> list[dict[str, Any]]:
        items = self._pages(
            "query",
            KeyConditionExpression="#d = :d AND #t BETWEEN :s AND :e",
            ExpressionAttributeNames={"#d": str(StorageKey.PARTITION), "#t": str(StorageKey.SORT)},
            ExpressionAttributeValues={":d": {"S": device_id}, ":s": {"S": start}, ":e": {"S": end}},
            ScanIndexForward=True,
        )
        return [self._reading(i) for i in items]

    def latest(self, device_id: str) -> dict[str, Any] | None:
        page = self._call(
            "query", "query",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": str(StorageKey.PARTITION)},
            ExpressionAttributeValues={":d": {"S": device_id}},
            ScanIndexForward=False, Limit=1,
        )
        items = page.get("Items", [])
        return self._reading(items[0]) if items else None

    def expired(self, cutoff: str) -> list[dict[str, Any]]:
        items = self._pages(
            "scan", FilterExpression="#t < :c",
            ExpressionAttributeNames={"#t": str(StorageKey.SORT)}, ExpressionAttributeValues={":c": {"S": cutoff}},
        )
        return [self._reading(i) for i in items]

    def delete(self, device_id: str, timestamp: str) -> None:
        self._call("delete_item", "delete_item",
                   Key={str(StorageKey.PARTITION): {"S": device_id}, str(StorageKey.SORT): {"S": timestamp}})


class S3Store:
    def __init__(self, bucket: str, storage_class: str) -> None:
        self.bucket = bucket
        self.storage_class = storage_class
        self.s3 = client("s3")

    def _call(self, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.s3, op)(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _failed(f"S3 {op} on {self.bucket}", exc) from None

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=key, Body=data, StorageClass=self.storage_class, ContentType="application/json")

    def get(self, key: str) -> bytes:
        return bytes(self._call("get_object", Key=key)["Body"].read())

    def older_than(self, cutoff: datetime) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            page = self._call("list_objects_v2", **({"ContinuationToken": token} if token else {}))
            for obj in page.get("Contents", []):
                if obj["LastModified"] < cutoff:
                    out.append((obj["Key"], int(obj["Size"])))
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)
