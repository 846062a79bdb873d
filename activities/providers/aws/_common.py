"""What every AWS resource module shares: boto3 clients from the credentials seam, the twin's
tags, ARNs, "not found" handling, the monitor-style `Pending` of a long AWS operation, and the
lifecycle every kind follows (`AwsResource`: ensure/poll converge, read, delete).

Clients are cached per process and configuration (building a boto3 client costs ~50 ms).
Every module reconciles: it reads the current state first and writes only what differs, so a
second `ensure` of an unchanged resource makes read calls only.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from activities.clouds import SANDBOX_DIR_SETTING, Clouds, clouds_from_environ
from activities.providers.typed import TypedProvider, may_delete, owner_of, require_own, to_create
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.naming import AwsNaming
from shared.resources.aws import AwsConfig
from shared.resources.base import ResourceConfig
from shared.resources.ownership import TWIN_TAG, Owner, claim

T = TypeVar("T")

REAL_POLL_SECONDS = 5.0
SANDBOX_POLL_SECONDS = 0.1
TAG_TWIN = TWIN_TAG
TAG_LAYER = "Layer"
# Error codes meaning "this resource does not exist" across the services we call.
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NoSuchBucket",
        "NotFoundException",
        "NotFound",
        "404",
        "NoSuchLifecycleConfiguration",
        "StateMachineDoesNotExist",
        "NoSuchTagSet",
        "NoSuchPublicAccessBlockConfiguration",
        "ServerSideEncryptionConfigurationNotFoundError",
    }
)


def clouds() -> Clouds:
    return clouds_from_environ()


_clients: dict[tuple[str, str, str], Any] = {}
_lock = threading.Lock()
_account: dict[str, str] = {}


def default_region() -> str:
    """The seam's default region (the control plane's own AWS calls; resources name theirs)."""
    cl = clouds()
    if cl.is_sandbox:
        return str((cl.endpoints.get("aws") or {}).get("region") or "us-east-1")
    return str(cl.environ.get("AWS_REGION") or cl.environ.get("AWS_DEFAULT_REGION") or "us-east-1")


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client from the credentials seam, cached per sandbox folder, service and region
    (default: the seam's)."""
    reg = region or default_region()
    key = (os.environ.get(SANDBOX_DIR_SETTING, ""), service, reg)
    # Created under the lock: boto3's default session is not safe to build clients from
    # several threads at once, and activities run in parallel.
    with _lock:
        found = _clients.get(key)
        if found is not None:
            return found
        cl = clouds()
        made = cl.aws_client(service, reg)
        if cl.is_sandbox and service == "iottwinmaker":
            # botocore sends TwinMaker calls to `api.<endpoint host>`, which does not resolve for
            # a local endpoint; real AWS needs the prefix, so only the sandbox client drops it.
            made.meta.config.inject_host_prefix = False
        _clients[key] = made
        return made


def account_id() -> str:
    """The AWS account the seam's credentials belong to (for ARNs)."""
    cl = clouds()
    if cl.is_sandbox:
        value = (cl.endpoints.get("aws") or {}).get("account_id")
        if value:
            return str(value)
    key = os.environ.get(SANDBOX_DIR_SETTING, "")
    if key not in _account:
        _account[key] = str(client("sts").get_caller_identity()["Account"])
    return _account[key]


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return ""


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def get_or_none(fn: Callable[[], T]) -> T | None:
    """`fn()`, or None when AWS answers that the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return fn()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def ignore_missing(fn: Callable[[], Any]) -> bool:
    """Run a delete; True if it deleted something, False if it was already gone."""
    from botocore.exceptions import ClientError

    try:
        fn()
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def naming(call: ResourceCall) -> AwsNaming:
    """Names derived from the twin (another resource's, e.g. the functions a role may invoke)."""
    return AwsNaming(call.twin)


def owner(call: ResourceCall) -> Owner:
    """The owner the call's configuration names (checked against the call's twin), for helpers
    that have the call but not its parsed configuration."""
    raw = call.resource.config.get("owner")
    if not isinstance(raw, dict):
        raise PermanentError(f"{call.resource.id}: its configuration names no owner (config.owner); plan the twin again")
    return owner_of(call, _Owned(name=call.resource.id, owner=Owner.model_validate(raw)))


class _Owned(ResourceConfig):
    """Only the owner of a configuration (read without its kind's model)."""


def tags(call: ResourceCall) -> dict[str, str]:
    """The tags every taggable resource carries: its owner (the twin, which the resource group's
    query selects, and the control plane) and its layer."""
    return {**owner(call).tags(), TAG_LAYER: call.resource.layer or "setup"}


def tag_list(call: ResourceCall, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted(tags(call).items())]


def missing_tags(current: Mapping[str, str] | None, call: ResourceCall) -> dict[str, str]:
    have = dict(current or {})
    return {k: v for k, v in tags(call).items() if have.get(k) != v}


def poll_seconds() -> float:
    return SANDBOX_POLL_SECONDS if clouds().is_sandbox else REAL_POLL_SECONDS


def pending(action: Action, description: str, **token: Any) -> EnsureResult:
    """Still running in AWS: the orchestrator polls again (the token carries the action so far)."""
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


def lambda_arn(region: str, function: str) -> str:
    if function.startswith("arn:"):
        return function
    return f"arn:aws:lambda:{region}:{account_id()}:function:{function}"


def canonical(doc: Any) -> str:
    """A JSON document in one canonical form (for comparing policies AWS may reformat)."""
    if isinstance(doc, str):
        from urllib.parse import unquote

        try:
            doc = json.loads(doc)
        except ValueError:
            doc = json.loads(unquote(doc))
    return json.dumps(_normalise(doc), sort_keys=True, separators=(",", ":"))


def _normalise(value: Any) -> Any:
    # IAM returns one-element lists as scalars and may reorder; compare as sorted lists.
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalise(v) for v in value]
        if len(items) == 1 and not isinstance(items[0], dict):
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


A = TypeVar("A", bound=AwsConfig)
# `ensure` hands the object it found (and checked) to `converge` in the same thread.
_found = threading.local()


class AwsResource(TypedProvider[A]):
    """The lifecycle of one AWS resource kind. Subclasses fill in the specifics; each operation
    parses the configuration once and hands it to them.

    - `ensure` and `poll` both converge (`converge`): read, then write only what differs; a step
      AWS finishes later returns `pending(...)` and the next poll converges again;
    - `read` reports what exists (`describe`), with outputs once it is `ready`;
    - `delete` starts the delete (`remove`), polls while AWS is still deleting, then removes what
      outlives the object itself (`leftovers`, e.g. its IAM role). Absent is not an error.

    Ownership: `converge` finds the object with `found` (its `describe`, refused when its owner
    tags, `owner_tags`, name another twin); `read` reports another twin's object as absent and
    `delete` leaves it alone.
    """

    #: what a person reads in progress
    label = "resource"

    # --- the specifics ---------------------------------------------------------------------

    def describe(self, call: ResourceCall, config: A) -> Any:
        """The resource as AWS describes it now, or None when it does not exist."""
        raise PermanentError(f"{type(self).__name__} does not define describe")

    def converge(self, call: ResourceCall, config: A, action: Action) -> EnsureResult:
        """Create or reconcile; `action` is what earlier polls of this ensure did."""
        raise PermanentError(f"{type(self).__name__} does not define converge")

    def remove(self, call: ResourceCall, config: A, current: Any) -> bool:
        """Start deleting `current`; True when it is gone now, False when AWS is still deleting."""
        raise PermanentError(f"{type(self).__name__} does not define remove")

    def leftovers(self, call: ResourceCall, config: A) -> bool:
        """Delete what outlives the resource (its role, a permission); True if anything was there."""
        return False

    def outputs(self, call: ResourceCall, config: A, current: Any) -> dict[str, str]:
        return {}

    def details(self, call: ResourceCall, config: A, current: Any) -> dict[str, Any]:
        return {}

    def ready(self, current: Any) -> bool:
        """Done provisioning (`read` reports outputs only then)."""
        return True

    def owner_tags(self, call: ResourceCall, config: A, current: Any) -> Mapping[str, str]:
        """The tags (or the record the kind keeps instead) naming the owner of `current`."""
        raise PermanentError(f"{type(self).__name__} does not define owner_tags")

    # --- ownership -------------------------------------------------------------------------

    def found(self, call: ResourceCall, config: A) -> Any:
        """`describe`, refused (`ForeignObject`) when the object is another twin's."""
        handed = getattr(_found, "value", None)
        _found.value = None
        if handed is not None and handed[0] is call:
            return handed[1]  # just found by `ensure`, in this thread, for this call
        current = self.describe(call, config)
        if current is not None:
            require_own(call, config, self.owner_tags(call, config, current), f"{self.label} {config.name}")
        return current

    def _ours(self, call: ResourceCall, config: A, current: Any) -> bool:
        return claim(owner_of(call, config), self.owner_tags(call, config, current)).allowed

    # --- the lifecycle ---------------------------------------------------------------------

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.found(call, config)
        if current is None:
            return to_create(f"{self.label} {config.name} is being created")
        _found.value = (call, current)  # `converge` reads it from here instead of again
        return self.converge(call, config, "unchanged")

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
        if not self._ours(call, config, current):
            return ReadResult(exists=False, details={"owner": "another twin"})
        outputs = self.outputs(call, config, current) if self.ready(current) else {}
        return ReadResult(exists=True, outputs=outputs, details=self.details(call, config, current))

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.describe(call, config)
        if current is None:
            return self.verified(call, config, "deleted" if self.leftovers(call, config) else "absent")
        if not may_delete(call, config, self.owner_tags(call, config, current), f"{self.label} {config.name}"):
            return EnsureResult(action="absent")
        if not self.remove(call, config, current):
            return self.deleting(config)
        self.leftovers(call, config)
        return self.verified(call, config, "deleted")

    def poll_delete(self, call: ResourceCall, config: A) -> EnsureResult:
        if self.describe(call, config) is not None:
            return self.deleting(config)
        self.leftovers(call, config)
        return self.verified(call, config, "deleted")

    def deleting(self, config: A, what: str = "") -> EnsureResult:
        return pending("deleted", what or f"{self.label} {config.name} is being deleted", stage="delete")

    def remaining(self, call: ResourceCall, config: A) -> list[str]:
        """What of this resource (this twin's, by ownership) is still there after its delete:
        the object itself, and what a kind adds (its role, its policy)."""
        current = self.describe(call, config)
        return [f"{self.label} {config.name}"] if current is not None and self._ours(call, config, current) else []

    def verified(self, call: ResourceCall, config: A, action: Action) -> EnsureResult:
        """`action`, once nothing of the resource is left; else still deleting (polled, so a
        destroy never reports Completed over an object it left behind)."""
        left = self.remaining(call, config)
        if left:
            return self.deleting(config, f"still there after the delete: {', '.join(left)}")
        return EnsureResult(action=action)
