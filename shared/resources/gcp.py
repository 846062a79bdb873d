"""Configurations of the GCP resource kinds (`activities/providers/gcp/`).

Every kind names its project (`GcpConfig`; None: the control plane's default project); regional
kinds (functions, scheduler jobs, workflows, buckets, Firestore) name their region too. Service
accounts are named by their account id (`{id}@{project}.iam.gserviceaccount.com`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from shared.contracts import Trigger, TwinUpdatePath
from shared.resources.base import PackageName, ResourceConfig, UserCodeRef


class GcpConfig(ResourceConfig):
    project_id: str | None


class ServiceAccountConfig(GcpConfig):
    """Setup: the service account the twin's functions run as."""


class GcsBucketConfig(GcpConfig):
    location: str
    storage_class: Literal["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]
    object_users: tuple[str, ...] = ()
    """Service accounts (ids) granted `roles/storage.objectUser` on this bucket only (the functions
    that read and write it); the functions' source bucket grants none."""


class PubSubTopicConfig(GcpConfig):
    """L1: the telemetry topic devices publish to (Cloud IoT Core was retired in 2023), or the
    feedback topic the twin's functions publish to for devices."""

    publishers: tuple[str, ...] = ()
    """Service accounts (ids) granted `roles/pubsub.publisher` on this topic only (the functions
    that send feedback); devices get their own grant from their `iot-device`."""


class CloudFunctionConfig(GcpConfig):
    """A Cloud Function (2nd gen) running one of our packages (or a user's event action)."""

    region: str
    package: PackageName
    runtime: str
    """e.g. `python311`."""
    trigger: Trigger
    environment: Mapping[str, str]
    """Static environment (never secrets: those are wired at apply time)."""
    public: bool
    """Callable from other clouds (receivers: they check the inter-cloud token in code)."""
    service_account: str
    topic: str | None = None
    """Pub/Sub-triggered functions: the topic."""
    processors: tuple[str, ...] = ()
    """The processor: the device ids whose processing it runs."""
    twin_update: TwinUpdatePath | None = None
    """The persister: how its readings reach the twin graph."""
    user_function: str | None = None
    """A user's event action: its function name in the spec."""
    path_to_code: str | None = None
    user_code: tuple[UserCodeRef, ...] = ()
    """The users' code the package carries: the processor's per-device folders, or the event
    action's code. (Packaging it is the GCP provider's part.)"""


class FirestoreConfig(GcpConfig):
    """L3 hot: a Firestore database with the readings' collection."""

    location: str
    collection: str
    service_account: str
    """The functions' account, granted `roles/datastore.user` (Firestore's IAM is per project)."""


class GcpIotDeviceConfig(GcpConfig):
    """A device's credentials to publish to the telemetry topic."""

    device_id: str
    topic: str
    service_account: str
    """The device's own account (id): its key is the device's credential, and it may only publish
    to `topic` (and read its feedback subscription)."""
    feedback_topic: str | None = None
    """When feedback reaches devices: the topic it is published to, with the device id attribute."""
    feedback_subscription: str | None = None
    """The device's own pull subscription on `feedback_topic`, filtered on its device id; the
    device's account may consume this subscription and nothing else."""


class SchedulerJobConfig(GcpConfig):
    """A Cloud Scheduler job calling function `function` on `cron` (unix cron, UTC)."""

    region: str
    cron: str
    function: str
    service_account: str
    """The account whose OIDC token the job sends (the function admits it as an invoker)."""


class WorkflowConfig(GcpConfig):
    """The notification workflow the event checker starts."""

    region: str
    definition: str
    """The original project's definition file name."""
