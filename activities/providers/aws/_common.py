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
from activities.providers import lifecycle
from activities.providers.lifecycle import DescribedResource
from activities.providers.typed import call_owner, owner_of
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.naming import AwsNaming
from shared.resources.aws import AwsConfig
from shared.resources.ownership import TWIN_TAG, Claim, claim

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


def tags(call: ResourceCall) -> dict[str, str]:
    """The tags every taggable resource carries: its owner (the twin, which the resource group's
    query selects, and the control plane) and its layer."""
    return {**call_owner(call).tags(), TAG_LAYER: call.resource.layer or "setup"}


def tag_list(call: ResourceCall, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted(tags(call).items())]


def missing_tags(current: Mapping[str, str] | None, call: ResourceCall) -> dict[str, str]:
    have = dict(current or {})
    return {k: v for k, v in tags(call).items() if have.get(k) != v}


def poll_seconds() -> float:
    return SANDBOX_POLL_SECONDS if clouds().is_sandbox else REAL_POLL_SECONDS


def pending(action: Action, description: str, **token: Any) -> EnsureResult:
    """Still running in AWS: the orchestrator polls again (the token carries the action so far)."""
    return lifecycle.pending(action, description, poll_seconds(), **token)


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


class AwsResource(DescribedResource[A]):
    """The lifecycle of one AWS resource kind (`lifecycle.DescribedResource`): AWS objects name
    their owner in their tags (`owner_tags`: the tags, or the record a kind keeps instead)."""

    def owner_tags(self, call: ResourceCall, config: A, current: Any) -> Mapping[str, str]:
        """The tags (or the record the kind keeps instead) naming the owner of `current`."""
        raise PermanentError(f"{type(self).__name__} does not define owner_tags")

    def owner_claim(self, call: ResourceCall, config: A, current: Any) -> Claim:
        return claim(owner_of(call, config), self.owner_tags(call, config, current))

    def poll_seconds(self) -> float:
        return poll_seconds()
