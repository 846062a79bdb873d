"""L3 hot (kind `dynamodb-table`): on-demand table keyed `device_id` (HASH) + `timestamp` (RANGE),
both strings (contracts.StorageKey), with TTL enabled on the `ttl` attribute. Waits for
`ACTIVE` through `Pending`; a table's keys cannot change, so a mismatch is a permanent error.

Our writers deliberately put no `ttl` on readings: the hot-to-cold mover copies a reading to cold
storage and only then deletes it, and a TTL firing first would drop readings not yet copied (a
mover that failed for a day would lose a day). TTL stays enabled for items a user stamps himself."""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    AwsResource,
    client,
    get_or_none,
    ignore_missing,
    pending,
    tag_list,
    tags,
)
from activities.providers.lifecycle import merge_action
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import DynamoDbTableConfig

TTL_ATTRIBUTE = "ttl"


@register("aws", "dynamodb-table")
class DynamoDbTable(AwsResource[DynamoDbTableConfig]):
    model = DynamoDbTableConfig
    label = "table"

    def describe(self, call: ResourceCall, config: DynamoDbTableConfig) -> dict[str, Any] | None:
        found = get_or_none(lambda: client("dynamodb", config.region).describe_table(TableName=config.name))
        return None if found is None else found["Table"]

    def converge(self, call: ResourceCall, config: DynamoDbTableConfig, action: Action) -> EnsureResult:
        ddb = client("dynamodb", config.region)
        name, hash_key, range_key = config.name, config.hash_key, config.range_key
        table = self.found(call, config)
        if table is None:
            ddb.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"},
                                      {"AttributeName": range_key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}],
                BillingMode=config.billing_mode,
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
        if current_billing != config.billing_mode:
            ddb.update_table(TableName=name, BillingMode=config.billing_mode)
            return pending(merge_action(action, "updated"), f"table {name} billing mode is being changed")
        ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription") or {}
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != TTL_ATTRIBUTE:
            ddb.update_time_to_live(TableName=name,
                                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})
            action = merge_action(action, "updated")
        have = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags") or []}
        missing = {k: v for k, v in tags(call).items() if have.get(k) != v}
        if missing:
            ddb.tag_resource(ResourceArn=table["TableArn"], Tags=[{"Key": k, "Value": v} for k, v in missing.items()])
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self.outputs(call, config, table))

    def owner_tags(self, call: ResourceCall, config: DynamoDbTableConfig, current: Any) -> dict[str, str]:
        listed = client("dynamodb", config.region).list_tags_of_resource(ResourceArn=current["TableArn"])
        return {t["Key"]: t["Value"] for t in listed.get("Tags") or []}

    def outputs(self, call: ResourceCall, config: DynamoDbTableConfig, current: Any) -> dict[str, str]:
        return {Output.DYNAMODB_TABLE_NAME: config.name} if Output.DYNAMODB_TABLE_NAME in call.resource.produces else {}

    def details(self, call: ResourceCall, config: DynamoDbTableConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("TableArn"), "status": current.get("TableStatus"),
                "keys": {k["KeyType"]: k["AttributeName"] for k in current.get("KeySchema") or []},
                "billing_mode": (current.get("BillingModeSummary") or {}).get("BillingMode")}

    def remove(self, call: ResourceCall, config: DynamoDbTableConfig, current: Any) -> bool:
        if current.get("TableStatus") != "DELETING":
            ignore_missing(lambda: client("dynamodb", config.region).delete_table(TableName=config.name))
        return self.describe(call, config) is None
