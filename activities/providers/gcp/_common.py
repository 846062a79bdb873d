"""What every GCP resource module shares: Google clients from the credentials seam, the labels every
object carries, "not found" handling, IAM policy read-modify-writes, the monitor-style `Pending` of
a long Google operation, and the lifecycle every kind follows (`GcpResource`: ensure/poll converge,
read, delete).

Clients are the official ones: GAPIC clients over REST (Cloud Functions, Cloud Run, Cloud
Scheduler, Resource Manager, Pub/Sub, Firestore Admin), `IAMClient` over gRPC (it has no REST
transport) and `google.cloud.storage`. They are cached per process and configuration. Every module
reconciles: it reads the current state first and writes only what differs, so a second `ensure` of
an unchanged resource makes read calls only.

Ownership (`shared.resources.ownership`): every object that takes labels carries `digital-twin`,
`managed-by` and `twin-layer` (`labels`; the twin as `twin_label`, one value per twin although
labels are lower case); service accounts and Cloud Scheduler jobs have no labels, so their
description names the owner (`owner_description`); a Firestore database has neither, so it holds
an owner document (`firestore.py`). `GcpResource` reads those marks (`owner_marks`) before it
writes: an `ensure` adopts only an unowned or own object and refuses another's permanently, a
`delete` leaves another's alone and is done only once nothing of the resource is left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from activities.clouds import SANDBOX_DIR_SETTING, Clouds, clouds_from_environ
from activities.providers import lifecycle
from activities.providers.lifecycle import DescribedResource
from activities.providers.typed import call_owner, owner_of
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.naming import GcpNaming
from shared.resources.gcp import GcpConfig
from shared.resources.ownership import CONTROL_PLANE_TAG, TWIN_TAG, Claim, Owner, claim

T = TypeVar("T")

REAL_POLL_SECONDS = 5.0
SANDBOX_POLL_SECONDS = 0.1
LABEL_TWIN = "digital-twin"
LABEL_MANAGER = "managed-by"
LABEL_LAYER = "twin-layer"
IAM_RETRIES = 5
log = logging.getLogger("activities.ownership")


_seams: dict[frozenset[tuple[str, str]], Clouds] = {}
_projects: dict[tuple[frozenset[tuple[str, str]], str | None], str] = {}
_seam_lock = threading.Lock()
MAX_SEAMS = 16
"""Configurations kept at once (a process has one; tests switch between a few sandboxes)."""


def _environment() -> frozenset[tuple[str, str]]:
    return frozenset(os.environ.items())


def clouds() -> Clouds:
    """The credentials seam for this process's configuration, built once per configuration (the
    sandbox's endpoints.json is read once, not on every call)."""
    key = _environment()
    with _seam_lock:
        found = _seams.get(key)
    if found is None:
        found = clouds_from_environ()
        with _seam_lock:
            if len(_seams) >= MAX_SEAMS:
                _seams.clear()
            _seams[key] = found
    return found


_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _cached(key: str, make: Callable[[Clouds], Any]) -> Any:
    full = (os.environ.get(SANDBOX_DIR_SETTING, ""), key)
    with _lock:
        found = _clients.get(full)
        if found is None:
            found = _clients[full] = make(clouds())
        return found


def functions() -> Any:
    from google.cloud import functions_v2

    return _cached("functions", lambda c: c.gcp_client(functions_v2.FunctionServiceClient))


def run_services() -> Any:
    from google.cloud import run_v2

    return _cached("run", lambda c: c.gcp_client(run_v2.ServicesClient))


def scheduler() -> Any:
    from google.cloud import scheduler_v1

    return _cached("scheduler", lambda c: c.gcp_client(scheduler_v1.CloudSchedulerClient))


def projects() -> Any:
    from google.cloud import resourcemanager_v3

    return _cached("projects", lambda c: c.gcp_client(resourcemanager_v3.ProjectsClient))


def firestore_admin() -> Any:
    from google.cloud import firestore_admin_v1

    return _cached("firestore-admin", lambda c: c.gcp_client(firestore_admin_v1.FirestoreAdminClient))


def firestore_data() -> Any:
    """The Firestore data plane's GAPIC client (gRPC), for the owner document of a database."""
    from google.cloud.firestore_v1.services.firestore import FirestoreClient

    def make(c: Clouds) -> Any:
        if c.is_sandbox:
            import grpc
            from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

            return FirestoreClient(transport=FirestoreGrpcTransport(channel=grpc.insecure_channel(
                str(c.endpoints["gcp"]["grpc_host"]))))
        return FirestoreClient(credentials=c.gcp_credentials())

    return _cached("firestore-data", make)


def publisher() -> Any:
    # The GAPIC client, not `pubsub_v1.PublisherClient`: no batching, and IAM methods on topics.
    from google.pubsub_v1.services.publisher import PublisherClient

    return _cached("publisher", lambda c: c.gcp_client(PublisherClient))


def subscriber() -> Any:
    # The GAPIC client: unary calls and IAM methods on subscriptions.
    from google.pubsub_v1.services.subscriber import SubscriberClient

    return _cached("subscriber", lambda c: c.gcp_client(SubscriberClient))


def iam_admin() -> Any:
    return _cached("iam", lambda c: c.gcp_iam_admin())


def storage(project: str) -> Any:
    return _cached(f"storage:{project}", lambda c: c.gcp_storage(project))


def project_of(config: GcpConfig) -> str:
    """The project `config` lives in, resolved once per configuration and process (on Google
    Cloud without a configured project that asks the metadata server)."""
    key = (_environment(), config.project_id)
    with _seam_lock:
        found = _projects.get(key)
    if found is None:
        found = clouds().gcp_project(config.project_id)
        with _seam_lock:
            if len(_projects) >= 4 * MAX_SEAMS:
                _projects.clear()
            _projects[key] = found
    return found


def account_email(account_id: str, project: str) -> str:
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def naming(call: ResourceCall) -> GcpNaming:
    return GcpNaming(call.twin)


# --- ownership ---------------------------------------------------------------------------------


def label_value(text: str) -> str:
    """`text` as a label value: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def twin_label(twin: str) -> str:
    """The twin as a label value, a different one for every twin: the name itself when it is a
    valid label value, else lowered with `_` and a hash of the exact name appended (label values
    are lower case, and twins `Greenhouse` and `greenhouse` are different owners; twin names never
    hold `_`, so no other twin's plain name reads the same)."""
    lowered = label_value(twin)
    if lowered == twin:
        return twin
    return f"{lowered[:54]}_{hashlib.sha256(twin.encode()).hexdigest()[:8]}"


def labelled(owner: Owner) -> Owner:
    """`owner` as labels spell it."""
    return Owner(twin=twin_label(owner.twin), control_plane=label_value(owner.control_plane))


def labels(call: ResourceCall) -> dict[str, str]:
    """The labels every labelled object carries: its owner (twin and control plane) and its layer."""
    owner = labelled(call_owner(call))
    return {LABEL_TWIN: owner.twin, LABEL_MANAGER: owner.control_plane,
            LABEL_LAYER: label_value(call.resource.layer or "setup")}


def missing_labels(current: Any, call: ResourceCall) -> dict[str, str]:
    have = dict(current or {})
    return {k: v for k, v in labels(call).items() if have.get(k) != v}


def marks_from_labels(current: Mapping[str, str] | None) -> dict[str, str]:
    """The owner marks of a labelled object (in `labelled` spelling)."""
    have = dict(current or {})
    return {tag: have[key] for tag, key in ((TWIN_TAG, LABEL_TWIN), (CONTROL_PLANE_TAG, LABEL_MANAGER)) if key in have}


_DESCRIPTION = re.compile(r"Managed by (?P<manager>\S+) for twin (?P<twin>\S+)")


def owner_description(call: ResourceCall) -> str:
    """For objects without labels (service accounts, scheduler jobs): who owns them, in words."""
    owner = call_owner(call)
    return f"Managed by {owner.control_plane} for twin {owner.twin} ({call.resource.id})"


def marks_from_description(description: str | None) -> dict[str, str]:
    """The owner marks an `owner_description` carries; none when the description is anything else."""
    found = _DESCRIPTION.match(description or "")
    return {TWIN_TAG: found["twin"], CONTROL_PLANE_TAG: found["manager"]} if found else {}


def account_marks(account: Any) -> dict[str, str]:
    """The owner marks of a service account (`iam_admin_v1.ServiceAccount`): its description's."""
    return marks_from_description(getattr(account, "description", ""))


def bucket_is_ours(call: ResourceCall, bucket: Any) -> bool:
    """Whether `bucket` (`storage.Bucket`) is unowned or the call's twin's (so its objects may be touched)."""
    return claim(labelled(call_owner(call)), marks_from_labels(bucket.labels)).allowed


def adopt_account(name: str, call: ResourceCall) -> None:
    """Write the owner description on an unowned service account (PatchServiceAccount)."""
    iam_admin().patch_service_account(request={
        "service_account": {"name": name, "description": owner_description(call)},
        "update_mask": {"paths": ["description"]}})


# --- errors -----------------------------------------------------------------------------------


def get_or_none(fn: Callable[[], T]) -> T | None:
    """`fn()`, or None when Google answers that the object does not exist."""
    from google.api_core.exceptions import NotFound

    try:
        return fn()
    except NotFound:
        return None


def ignore_missing(fn: Callable[[], Any]) -> bool:
    """Run a delete; True if it deleted something, False if it was already gone."""
    from google.api_core.exceptions import NotFound

    try:
        fn()
    except NotFound:
        return False
    return True


# --- IAM policies -----------------------------------------------------------------------------


def members_of(policy: Any, role: str) -> set[str]:
    return {m for b in policy.bindings if b.role == role for m in b.members}


def change_policy(get: Callable[[], Any], set_: Callable[[Any], Any], role: str,
                  add: set[str] = frozenset(), remove: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    """Read-modify-write one role's members of an IAM policy (`google.iam.v1.Policy`); True if it
    wrote. A concurrent change (stale etag: 409 ABORTED) re-reads and tries again."""
    from google.api_core.exceptions import Aborted, BadRequest, Conflict

    for attempt in range(IAM_RETRIES):
        policy = get()
        current = members_of(policy, role)
        wanted = (current | set(add)) - set(remove)
        if wanted == current:
            return False
        kept = [b for b in policy.bindings if b.role != role]
        del policy.bindings[:]
        policy.bindings.extend(kept)
        if wanted:
            policy.bindings.add(role=role, members=sorted(wanted))
        try:
            set_(policy)
            return True
        except (Aborted, Conflict):
            time.sleep(0.2 * (attempt + 1))
        except BadRequest as exc:
            # A service account created moments ago is not visible to IAM everywhere yet.
            if "does not exist" in str(exc):
                raise TransientError(f"granting {role}: {exc.message} (new service accounts take a moment)") from None
            raise
    raise TransientError(f"IAM policy kept changing under us while granting {role}; will retry")


def project_policy(project: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    resource = f"projects/{project}"
    client = projects()
    return (lambda: client.get_iam_policy(request={"resource": resource}),
            lambda p: client.set_iam_policy(request={"resource": resource, "policy": p}))


# --- long operations --------------------------------------------------------------------------


def poll_seconds() -> float:
    return SANDBOX_POLL_SECONDS if clouds().is_sandbox else REAL_POLL_SECONDS


def pending(action: Action, description: str, **token: Any) -> EnsureResult:
    """Still running in Google Cloud: the orchestrator polls again (the token carries the action so far)."""
    return lifecycle.pending(action, description, poll_seconds(), **token)


def operation_error(client: Any, name: str) -> str | None:
    """The error message of finished long-running operation `name`; None if it succeeded, still
    runs, or is no longer there (Google keeps finished operations only for a while)."""
    from google.longrunning import operations_pb2

    op = get_or_none(lambda: client.get_operation(operations_pb2.GetOperationRequest(name=name)))
    if op is not None and op.done and op.error.code:
        return str(op.error.message) or f"code {op.error.code}"
    return None


G = TypeVar("G", bound=GcpConfig)


class GcpResource(DescribedResource[G]):
    """The lifecycle of one GCP resource kind (`lifecycle.DescribedResource`): Google objects
    name their owner in their labels (`owner_marks`; a kind without labels reads them elsewhere,
    e.g. a service account's description, and sets `labelled = False`)."""

    #: whether `owner_marks` are labels (compared in their lower-case spelling)
    labelled = True

    def owner_marks(self, call: ResourceCall, config: G, current: Any) -> Mapping[str, str]:
        """The owner marks (`TWIN_TAG`, `CONTROL_PLANE_TAG`) `current` carries."""
        return marks_from_labels(getattr(current, "labels", None))

    def owner_claim(self, call: ResourceCall, config: G, current: Any) -> Claim:
        owner = owner_of(call, config)
        return claim(labelled(owner) if self.labelled else owner, self.owner_marks(call, config, current))

    def poll_seconds(self) -> float:
        return poll_seconds()
