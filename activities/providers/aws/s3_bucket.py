"""L3 cold / L3 archive / L4 TwinMaker (kind `s3-bucket`): a private bucket (public access
blocked, SSE-S3), tagged, with a lifecycle rule that moves objects to the plan's storage class
(`STANDARD_IA` for cold, `DEEP_ARCHIVE` for archive) as a safety net: the movers and writers
already write with that `StorageClass`. Destroy empties the bucket, then deletes it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import AwsResource, client, error_code, get_or_none, tags
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import S3BucketConfig, S3StorageClass

RULE_ID = "twin-storage-class"
# S3 refuses transitions to STANDARD_IA before 30 days; the archive classes accept 0.
MIN_TRANSITION_DAYS: dict[S3StorageClass, int] = {"STANDARD_IA": 30, "ONEZONE_IA": 30, "INTELLIGENT_TIERING": 0, "GLACIER_IR": 0,
                       "GLACIER": 0, "DEEP_ARCHIVE": 0}
BLOCK_ALL = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def wanted_lifecycle(config: S3BucketConfig) -> list[dict[str, Any]]:
    storage_class = config.storage_class
    rules: list[dict[str, Any]] = [{
        "ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }]
    if storage_class != "STANDARD":
        rules.append({"ID": RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
                      "Transitions": [{"Days": MIN_TRANSITION_DAYS[storage_class], "StorageClass": storage_class}]})
    return rules


def _comparable(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for r in rules:
        transitions = tuple(sorted((int(t.get("Days", 0)), t.get("StorageClass")) for t in r.get("Transitions") or []))
        abort = (r.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
        prefix = (r.get("Filter") or {}).get("Prefix", r.get("Prefix", ""))
        out.append((r.get("ID"), r.get("Status"), prefix or "", transitions, abort))
    return sorted(out, key=repr)


def exists(config: S3BucketConfig) -> bool:
    try:
        client("s3", config.region).head_bucket(Bucket=config.name)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied"):
            raise PermanentError(
                f"S3 bucket {config.name} belongs to another account (names are global): rename the twin"
            ) from None
        raise
    return True


@register("aws", "s3-bucket")
class S3Bucket(AwsResource[S3BucketConfig]):
    model = S3BucketConfig
    label = "S3 bucket"

    def describe(self, call: ResourceCall, config: S3BucketConfig) -> dict[str, Any] | None:
        return {"bucket": config.name} if exists(config) else None

    def owner_tags(self, call: ResourceCall, config: S3BucketConfig, current: Any) -> dict[str, str]:
        tagging = get_or_none(lambda: client("s3", config.region).get_bucket_tagging(Bucket=config.name))
        return {t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet") or []}

    def converge(self, call: ResourceCall, config: S3BucketConfig, action: Action) -> EnsureResult:
        s3 = client("s3", config.region)
        name = config.name
        if self.found(call, config) is None:
            kwargs: dict[str, Any] = {"Bucket": name}
            if config.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": config.region}
            try:
                s3.create_bucket(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "BucketAlreadyExists":
                    raise PermanentError(f"S3 bucket name {name} is taken by another account: rename the twin") from None
                if error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise
                # Ours already (an earlier attempt, or another twin of this account): whose?
                self.found(call, config)
            # CreateBucket takes no tags: the owner is written next, before anything else. A
            # crash in between leaves an unowned bucket, which the retry adopts as its own.
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                    for k, v in sorted(tags(call).items())]})
            action = "created"

        def changed() -> None:
            nonlocal action
            if action == "unchanged":
                action = "updated"

        block = get_or_none(lambda: s3.get_public_access_block(Bucket=name))
        if block is None or block.get("PublicAccessBlockConfiguration") != BLOCK_ALL:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=BLOCK_ALL)
            changed()
        enc = get_or_none(lambda: s3.get_bucket_encryption(Bucket=name))
        algos = [((r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm"))
                 for r in ((enc or {}).get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []]
        if not algos or algos[0] not in ("AES256", "aws:kms"):
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=ENCRYPTION)
            changed()
        rules = wanted_lifecycle(config)
        current = get_or_none(lambda: s3.get_bucket_lifecycle_configuration(Bucket=name))
        if _comparable((current or {}).get("Rules") or []) != _comparable(rules):
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
            changed()
        tagging = get_or_none(lambda: s3.get_bucket_tagging(Bucket=name))
        have = {t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet") or []}
        if any(have.get(k) != v for k, v in tags(call).items()):
            merged = {**have, **tags(call)}
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(merged.items())]})
            changed()
        return EnsureResult(action=action, outputs=self.outputs(call, config, None))

    def outputs(self, call: ResourceCall, config: S3BucketConfig, current: Any) -> dict[str, str]:
        return {o: config.name for o in call.resource.produces if o.endswith("_BUCKET_NAME")}

    def details(self, call: ResourceCall, config: S3BucketConfig, current: Any) -> dict[str, Any]:
        lifecycle = get_or_none(lambda: client("s3", config.region).get_bucket_lifecycle_configuration(
            Bucket=config.name)) or {}
        classes = sorted({t.get("StorageClass") for r in lifecycle.get("Rules") or [] for t in r.get("Transitions") or []})
        return {"bucket": config.name, "transitions_to": classes}

    def remove(self, call: ResourceCall, config: S3BucketConfig, current: Any) -> bool:
        s3 = client("s3", config.region)
        name = config.name
        # A bucket must be empty before it can be deleted (versions and delete markers too).
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        try:
            s3.delete_bucket(Bucket=name)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchBucket", "404"):
                raise
        return True
