"""What every GCP resource module shares: Google clients from the credentials seam, the labels every
object carries, "not found" handling, IAM policy read-modify-writes, the monitor-style `Pending` of
a long Google operation, and the lifecycle every kind follows (`GcpResource`: ensure/poll converge,
read, delete).

Clients are the official ones: GAPIC clients over REST (Cloud Functions, Cloud Run, Cloud
Scheduler, Resource Manager, Pub/Sub, Firestore Admin), `IAMClient` over gRPC (it has no REST
transport) and `google.cloud.storage`. They are cached per process and configuration. Every module
reconciles: it reads the current state first and writes only what differs, so a second `ensure` of
an unchanged resource makes read calls only.

Ownership: every object that takes labels carries `digital-twin`, `managed-by` and `twin-layer`
(`labels`); service accounts and Cloud Scheduler jobs have no labels, so their description names
the owner (`owner_description`); a Firestore database has neither.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from activities.clouds import SANDBOX_DIR_SETTING, Clouds, clouds_from_environ
from activities.providers.typed import TypedProvider
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.naming import GcpNaming
from shared.resources.gcp import GcpConfig

T = TypeVar("T")

REAL_POLL_SECONDS = 5.0
SANDBOX_POLL_SECONDS = 0.1
LABEL_TWIN = "digital-twin"
LABEL_MANAGER = "managed-by"
LABEL_LAYER = "twin-layer"
MANAGER = "twin-control-plane"
OWNER_PREFIX = "Managed by twin-control-plane for twin "
IAM_RETRIES = 5


def clouds() -> Clouds:
    return clouds_from_environ()


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


def publisher() -> Any:
    # The GAPIC client, not `pubsub_v1.PublisherClient`: no batching, and IAM methods on topics.
    from google.pubsub_v1.services.publisher import PublisherClient

    return _cached("publisher", lambda c: c.gcp_client(PublisherClient))


def iam_admin() -> Any:
    return _cached("iam", lambda c: c.gcp_iam_admin())


def storage(project: str) -> Any:
    return _cached(f"storage:{project}", lambda c: c.gcp_storage(project))


def project_of(config: GcpConfig) -> str:
    return clouds().gcp_project(config.project_id)


def account_email(account_id: str, project: str) -> str:
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def naming(call: ResourceCall) -> GcpNaming:
    return GcpNaming(call.twin)


# --- ownership --------------------------------------------------------------------------------


def label_value(text: str) -> str:
    """`text` as a label value: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def labels(call: ResourceCall) -> dict[str, str]:
    """The labels every labelled object carries: its twin, its manager and its layer."""
    return {LABEL_TWIN: label_value(call.twin), LABEL_MANAGER: MANAGER,
            LABEL_LAYER: label_value(call.resource.layer or "setup")}


def missing_labels(current: Any, call: ResourceCall) -> dict[str, str]:
    have = dict(current or {})
    return {k: v for k, v in labels(call).items() if have.get(k) != v}


def owner_description(call: ResourceCall) -> str:
    """For objects without labels (service accounts, scheduler jobs): who owns them, in words."""
    return f"{OWNER_PREFIX}{call.twin} ({call.resource.id})"


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
    return EnsureResult(
        action=action,
        pending=Pending(token={"action": action, **token}, poll_after_seconds=poll_seconds(), description=description),
    )


def action_from(call: ResourceCall, default: Action = "unchanged") -> Action:
    """The action recorded in a pending token (the first ensure's verdict), else `default`."""
    if call.pending is not None:
        recorded = call.pending.token.get("action")
        if recorded in ("created", "updated", "unchanged", "deleted", "absent"):
            return recorded  # type: ignore[no-any-return]
    return default


def merge_action(first: Action, later: Action) -> Action:
    """`created` wins over `updated`, which wins over `unchanged`."""
    for candidate in ("created", "deleted", "updated"):
        if candidate in (first, later):
            return candidate  # type: ignore[return-value]
    return first


def operation_error(client: Any, name: str) -> str | None:
    """The error message of finished long-running operation `name`, None if it succeeded or runs."""
    from google.longrunning import operations_pb2

    op = client.get_operation(operations_pb2.GetOperationRequest(name=name))
    if op.done and op.HasField("error"):
        return str(op.error.message) or f"code {op.error.code}"
    return None


G = TypeVar("G", bound=GcpConfig)


class GcpResource(TypedProvider[G]):
    """The lifecycle of one GCP resource kind. Subclasses fill in the specifics; each operation
    parses the configuration once and hands it to them.

    - `ensure` and `poll` both converge (`converge`): read, then write only what differs; a step
      Google finishes later returns `pending(...)` and the next poll converges again;
    - `read` reports what exists (`describe`), with outputs once it is `ready`;
    - `delete` starts the delete (`remove`), polls while Google is still deleting, then removes
      what outlives the object itself (`leftovers`, e.g. its IAM bindings). Absent is not an error.
    """

    label = "resource"

    def describe(self, call: ResourceCall, config: G) -> Any:
        """The object as Google describes it now, or None when it does not exist."""
        raise PermanentError(f"{type(self).__name__} does not define describe")

    def converge(self, call: ResourceCall, config: G, action: Action) -> EnsureResult:
        raise PermanentError(f"{type(self).__name__} does not define converge")

    def remove(self, call: ResourceCall, config: G, current: Any) -> bool:
        """Start deleting `current`; True when it is gone now, False when Google is still deleting."""
        raise PermanentError(f"{type(self).__name__} does not define remove")

    def leftovers(self, call: ResourceCall, config: G) -> bool:
        return False

    def outputs(self, call: ResourceCall, config: G, current: Any) -> dict[str, str]:
        return {}

    def details(self, call: ResourceCall, config: G, current: Any) -> dict[str, Any]:
        return {}

    def ready(self, current: Any) -> bool:
        return True

    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self.converge(call, self.config(call), "unchanged")

    def poll(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        if call.pending is not None and call.pending.token.get("stage") == "delete":
            return self.poll_delete(call, config)
        return self.converge(call, config, action_from(call))

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        current = self.describe(call, config)
        if current is None:
            return ReadResult(exists=False)
        outputs = self.outputs(call, config, current) if self.ready(current) else {}
        return ReadResult(exists=True, outputs=outputs, details=self.details(call, config, current))

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.describe(call, config)
        if current is None:
            return EnsureResult(action="deleted" if self.leftovers(call, config) else "absent")
        if not self.remove(call, config, current):
            return self.deleting(config)
        self.leftovers(call, config)
        return EnsureResult(action="deleted")

    def poll_delete(self, call: ResourceCall, config: G) -> EnsureResult:
        if self.describe(call, config) is not None:
            return self.deleting(config)
        self.leftovers(call, config)
        return EnsureResult(action="deleted")

    def deleting(self, config: G) -> EnsureResult:
        return pending("deleted", f"{self.label} {config.name} is being deleted", stage="delete")
