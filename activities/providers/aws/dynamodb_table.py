"""L3 hot (kind `dynamodb-table`): on-demand table keyed `device_id` (HASH) + `timestamp` (RANGE),
both strings (contracts.StorageKey), with TTL enabled on the `ttl` attribute. Waits for
`ACTIVE` through `Pending`; a table's keys cannot change, so a mismatch is a permanent error.

Our writers deliberately put no `ttl` on readings: the hot-to-cold mover copies a reading to cold
storage and only then deletes it, and a TTL firing first would drop readings not yet copied (a
mover that failed for a day would lose a day). TTL stays enabled for items a user stamps himself."""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    action_from,
    cfg,
    client,
    get_or_none,
    ignore_missing,
    merge_action,
    name_of,
    pending,
    tag_list,
    tags,
)
from activities.registry import Provider, register
from shared.contracts import Output, StorageKey
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

DEFAULT_TTL_ATTRIBUTE = "ttl"


def _keys(call: ResourceCall) -> tuple[str, str]:
    return str(cfg(call, "hash_key", StorageKey.PARTITION)), str(cfg(call, "range_key", StorageKey.SORT))


def describe(call: ResourceCall) -> dict[str, Any] | None:
    found = get_or_none(lambda: client("dynamodb", call).describe_table(TableName=name_of(call)))
    return None if found is None else found["Table"]


@register("aws", "dynamodb-table")
class DynamoDbTable(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._converge(call, "unchanged")

    def poll(self, call: ResourceCall) -> EnsureResult:
        if call.pending is not None and call.pending.token.get("stage") == "delete":
            return EnsureResult(action="deleted") if describe(call) is None else pending(
                "deleted", f"table {name_of(call)} is being deleted", stage="delete")
        return self._converge(call, action_from(call))

    def _converge(self, call: ResourceCall, action: Action) -> EnsureResult:
        ddb = client("dynamodb", call)
        name = name_of(call)
        hash_key, range_key = _keys(call)
        billing = str(cfg(call, "billing_mode", "PAY_PER_REQUEST"))
        table = describe(call)
        if table is None:
            ddb.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"},
                                      {"AttributeName": range_key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}],
                BillingMode=billing,
                Tags=tag_list(call),
            )
            return pending(merge_action(action, "created"), f"table {name} is being created")
        schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema") or []}
        if schema != {"HASH": hash_key, "RANGE": range_key}:
            raise PermanentError(
                f"DynamoDB table {name} has keys {schema}, not HASH={hash_key} RANGE={range_key}: keys cannot change; "
                "destroy L3 hot (its data is lost) or rename the twin"
            )
        if table.get("TableStatus") != "ACTIVE":
            return pending(action, f"table {name} is {table.get('TableStatus')}")
        current_billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        if current_billing != billing:
            ddb.update_table(TableName=name, BillingMode=billing)
            return pending(merge_action(action, "updated"), f"table {name} billing mode is being changed")
        ttl_attr = str(cfg(call, "ttl_attribute", DEFAULT_TTL_ATTRIBUTE))
        ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription") or {}
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != ttl_attr:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attr})
            action = merge_action(action, "updated")
        have = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags") or []}
        missing = {k: v for k, v in tags(call).items() if have.get(k) != v}
        if missing:
            ddb.tag_resource(ResourceArn=table["TableArn"], Tags=[{"Key": k, "Value": v} for k, v in missing.items()])
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self._outputs(call))

    def _outputs(self, call: ResourceCall) -> dict[str, str]:
        return {Output.DYNAMODB_TABLE_NAME: name_of(call)} if Output.DYNAMODB_TABLE_NAME in call.resource.produces else {}

    def read(self, call: ResourceCall) -> ReadResult:
        table = describe(call)
        if table is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, outputs=self._outputs(call), details={
            "arn": table.get("TableArn"), "status": table.get("TableStatus"),
            "keys": {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema") or []},
            "billing_mode": (table.get("BillingModeSummary") or {}).get("BillingMode"),
        })

    def delete(self, call: ResourceCall) -> EnsureResult:
        table = describe(call)
        if table is None:
            return EnsureResult(action="absent")
        if table.get("TableStatus") != "DELETING":
            ignore_missing(lambda: client("dynamodb", call).delete_table(TableName=name_of(call)))
        if describe(call) is None:
            return EnsureResult(action="deleted")
        return pending("deleted", f"table {name_of(call)} is being deleted", stage="delete")
