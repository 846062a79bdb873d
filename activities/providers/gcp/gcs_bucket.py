"""Cloud Storage buckets (kind `gcs-bucket`): the functions' source bucket (STANDARD), L3 cold
(NEARLINE) and L3 archive (ARCHIVE).

A private bucket: uniform bucket-level access and public access prevention enforced; the plan's
default storage class (the writers and movers also write each object with its class); the twin's
labels; `roles/storage.objectUser` on this bucket only for the accounts the plan names (the
functions that read and write it). Bucket names are global: a name another project holds is a
permanent error. Destroy deletes every object (every generation), then the bucket. Its labels name its owner: an
unlabelled bucket is adopted (labelled), another twin's is refused and never emptied or deleted.
"""

from __future__ import annotations

import contextlib
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    labels,
    missing_labels,
    project_of,
    storage,
)
from activities.registry import register
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import GcsBucketConfig

OBJECT_USER = "roles/storage.objectUser"
IAM_RETRIES = 5


def _taken(name: str) -> PermanentError:
    return PermanentError(f"Cloud Storage bucket name {name} belongs to another project (bucket names are global): "
                          "rename the twin")


def lookup(config: GcsBucketConfig) -> Any:
    """The bucket, None when no bucket has that name; a name another project holds is refused."""
    from google.api_core.exceptions import Forbidden

    try:
        return storage(project_of(config)).lookup_bucket(config.name)
    except Forbidden:
        raise _taken(config.name) from None


def ensure_object_users(config: GcsBucketConfig, bucket: Any) -> bool:
    """`roles/storage.objectUser` for exactly the planned accounts (others' bindings kept); True if written."""
    from google.api_core.exceptions import Conflict, PreconditionFailed

    project = project_of(config)
    wanted = {f"serviceAccount:{account_email(a, project)}" for a in config.object_users}
    for _ in range(IAM_RETRIES):
        policy = bucket.get_iam_policy(requested_policy_version=3)
        current = {m for b in policy.bindings if b.get("role") == OBJECT_USER for m in b.get("members", ())}
        if wanted <= current:
            return False
        kept = [b for b in policy.bindings if b.get("role") != OBJECT_USER]
        policy.bindings = [*kept, {"role": OBJECT_USER, "members": sorted(current | wanted)}]
        try:
            bucket.set_iam_policy(policy)
            return True
        except (Conflict, PreconditionFailed):
            continue  # a concurrent change (stale etag): read again
    raise TransientError(f"bucket {config.name}: its IAM policy kept changing; will retry")


@register("gcp", "gcs-bucket")
class GcsBucket(GcpResource[GcsBucketConfig]):
    model = GcsBucketConfig
    label = "Cloud Storage bucket"

    def describe(self, call: ResourceCall, config: GcsBucketConfig) -> Any:
        return lookup(config)

    def converge(self, call: ResourceCall, config: GcsBucketConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict

        client = storage(project_of(config))
        bucket = self.found(call, config)
        if bucket is None:
            wanted = client.bucket(config.name)
            wanted.storage_class = config.storage_class
            wanted.labels = labels(call)
            wanted.iam_configuration.uniform_bucket_level_access_enabled = True
            wanted.iam_configuration.public_access_prevention = "enforced"
            try:
                bucket = client.create_bucket(wanted, location=config.location)
            except Conflict:
                bucket = self.found(call, config)  # ours after all (a concurrent run), another's, or another project's
                if bucket is None:
                    raise _taken(config.name) from None
            action = "created"
        changed = False
        if bucket.storage_class != config.storage_class:
            bucket.storage_class = config.storage_class
            changed = True
        if missing_labels(bucket.labels, call):
            bucket.labels = {**(bucket.labels or {}), **labels(call)}
            changed = True
        iam = bucket.iam_configuration
        if not iam.uniform_bucket_level_access_enabled or iam.public_access_prevention != "enforced":
            iam.uniform_bucket_level_access_enabled = True
            iam.public_access_prevention = "enforced"
            changed = True
        if changed:
            bucket.patch()
            action = "updated" if action == "unchanged" else action
        if config.object_users and ensure_object_users(config, bucket) and action == "unchanged":
            action = "updated"
        return EnsureResult(action=action, outputs=self.outputs(call, config, bucket))

    def outputs(self, call: ResourceCall, config: GcsBucketConfig, current: Any) -> dict[str, str]:
        return {o: config.name for o in call.resource.produces if o.endswith("_GCS_BUCKET")}

    def details(self, call: ResourceCall, config: GcsBucketConfig, current: Any) -> dict[str, Any]:
        return {"bucket": config.name, "storage_class": current.storage_class, "location": current.location,
                "labels": dict(current.labels or {})}

    def remove(self, call: ResourceCall, config: GcsBucketConfig, current: Any) -> bool:
        from google.api_core.exceptions import NotFound

        client = storage(project_of(config))
        # A bucket must be empty before it can be deleted (noncurrent generations too).
        for blob in client.list_blobs(config.name, versions=True):
            with contextlib.suppress(NotFound):
                blob.delete()  # this generation (the listing names each)
        with contextlib.suppress(NotFound):
            current.delete()
        return True
