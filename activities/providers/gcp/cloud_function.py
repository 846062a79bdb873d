"""Cloud Functions, 2nd gen (kind `cloud-function`): our reproducible package, its runtime service
account, environment, Pub/Sub trigger and who may invoke it.

Lifecycle, all in this file:
- ensure: the package goes to the twin's functions bucket under `{function}/{sha256}.zip` (content
  addressed: uploaded only when that object is missing, so the object name in
  `buildConfig.source` says which package is deployed) -> create the function, or update exactly
  the fields that differ (`update_mask`) -> each deploy is a long operation: return `Pending`, and
  each poll re-reads the function (DEPLOYING: still pending; FAILED: deploy again, at most
  `MAX_DEPLOY_ATTEMPTS` times, then the state message is the error) -> once ACTIVE, who may invoke
  it: `roles/run.invoker` on its Cloud Run service for `allUsers` when it is a receiver (public;
  the token is checked in code), else for the twin's own service account only (the identity other
  functions, Eventarc and Cloud Scheduler call with) -> its URL outputs.
- A Pub/Sub-triggered function (the dispatcher) gets an Eventarc trigger on the plan's topic, run as
  the twin's service account, retried on failure (a message that can never succeed is acknowledged
  by the function itself).
- apply_settings: read-modify-write of `serviceConfig.environmentVariables` (others kept; no call
  when current). On Google Cloud that deploys a new revision; the activity waits for it (bounded),
  so a rotation's next phase starts only once this one's receivers hold the new token.
- delete: the function (its service and trigger go with it) and its package objects.
Ownership: the function's labels (`_common.labels`) name its owner; an unlabelled function is
adopted (labelled by the update), another twin's refused and never deleted. Packages are written
to, and removed from, the functions bucket only when that bucket is this twin's (or unowned).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from activities import packages
from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    bucket_is_ours,
    change_policy,
    functions,
    get_or_none,
    labels,
    missing_labels,
    naming,
    operation_error,
    pending,
    project_of,
    run_services,
    storage,
)
from activities.providers.lifecycle import merge_action, settings_written
from activities.providers.typed import with_settings
from activities.registry import register
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.resources.gcp import CloudFunctionConfig

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError

INVOKER = "roles/run.invoker"
PUBSUB_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
MEMORY = "256M"
DEFAULT_TIMEOUT_S = 60
TIMER_TIMEOUT_S = 540
MAX_INSTANCES = 20
MAX_DEPLOY_ATTEMPTS = 3


def function_path(project: str, region: str, function_id: str) -> str:
    return f"projects/{project}/locations/{region}/functions/{function_id}"


def function_name(config: CloudFunctionConfig) -> str:
    return function_path(project_of(config), config.region, config.name)


def get_function(config: CloudFunctionConfig) -> Any:
    return get_or_none(lambda: functions().get_function(request={"name": function_name(config)}))


def build_package(config: CloudFunctionConfig) -> Any:
    """The function's package: ours, with the users' code it runs (a device's processor: that
    device's folder; an event action: its folder); content-addressed, so only a function whose
    package changed is redeployed (`activities.packages`: built once per configuration, so the
    polls of a deploy do not rebuild it)."""
    return packages.package("cloud-function", f"Cloud Function {config.name}", config)


def source_object(config: CloudFunctionConfig, data: bytes) -> str:
    return f"{config.name}/{hashlib.sha256(data).hexdigest()}.zip"


def upload_package(call: ResourceCall, config: CloudFunctionConfig, data: bytes) -> tuple[str, str]:
    """(bucket, object) of the package in the functions bucket, uploaded only if missing."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    bucket_name = naming(call).functions_bucket()
    bucket = storage(project_of(config)).lookup_bucket(bucket_name)
    if bucket is None:
        raise TransientError(f"Cloud Function {config.name}: the functions bucket {bucket_name} does not exist yet")
    if not bucket_is_ours(call, bucket):
        raise PermanentError(f"Cloud Function {config.name}: the functions bucket {bucket_name} belongs to another "
                             "twin; its packages are not written there")
    blob = bucket.blob(source_object(config, data))
    try:
        if not blob.exists():
            blob.upload_from_string(data, content_type="application/zip", if_generation_match=0)
    except PreconditionFailed:
        pass  # uploaded by a concurrent run: same name, same bytes
    except NotFound:
        raise TransientError(f"Cloud Function {config.name}: the functions bucket {bucket_name} does not exist yet") \
            from None
    return bucket_name, blob.name


def wanted_environment(call: ResourceCall, config: CloudFunctionConfig, current: dict[str, str]) -> dict[str, str]:
    """Current variables (others' kept) + the plan's + the wired settings (None removes)."""
    return with_settings({**current, **config.environment}, call.settings)


def _timeout(config: CloudFunctionConfig) -> int:
    """Timer functions (the movers) move a day's data in one run; the others answer one call."""
    return TIMER_TIMEOUT_S if config.trigger == "timer" else DEFAULT_TIMEOUT_S


def wanted_function(call: ResourceCall, config: CloudFunctionConfig, source: tuple[str, str],
                    current_env: dict[str, str]) -> dict[str, Any]:
    """The Function (as a dict for `functions_v2.Function`) the plan wants."""
    from payload_functions.packaging import entry_point

    project = project_of(config)
    account = account_email(config.service_account, project)
    body: dict[str, Any] = {
        "name": function_name(config),
        "description": f"{call.resource.id} of twin {call.twin}",
        "labels": labels(call),
        "build_config": {"runtime": config.runtime, "entry_point": entry_point(config.package),
                         "source": {"storage_source": {"bucket": source[0], "object_": source[1]}}},
        "service_config": {
            "environment_variables": wanted_environment(call, config, current_env),
            "service_account_email": account, "ingress_settings": "ALLOW_ALL",
            "timeout_seconds": _timeout(config), "available_memory": MEMORY, "max_instance_count": MAX_INSTANCES,
            "all_traffic_on_latest_revision": True,
        },
    }
    if config.topic is not None:
        body["event_trigger"] = {"trigger_region": config.region, "event_type": PUBSUB_EVENT,
                                 "pubsub_topic": f"projects/{project}/topics/{config.topic}",
                                 "service_account_email": account, "retry_policy": "RETRY_POLICY_RETRY"}
    return body


def differences(fn: Any, wanted: dict[str, Any], call: ResourceCall) -> list[str]:
    """The update-mask paths whose value differs from what is deployed."""
    build, service = wanted["build_config"], wanted["service_config"]
    have_build, have_service = fn.build_config, fn.service_config
    paths: list[str] = []
    if have_build.runtime != build["runtime"]:
        paths.append("build_config.runtime")
    if have_build.entry_point != build["entry_point"]:
        paths.append("build_config.entry_point")
    src = have_build.source.storage_source
    if (src.bucket, src.object_) != (build["source"]["storage_source"]["bucket"],
                                     build["source"]["storage_source"]["object_"]):
        paths.append("build_config.source")
    if dict(have_service.environment_variables) != service["environment_variables"]:
        paths.append("service_config.environment_variables")
    if have_service.service_account_email != service["service_account_email"]:
        paths.append("service_config.service_account_email")
    if have_service.ingress_settings.name != service["ingress_settings"]:
        paths.append("service_config.ingress_settings")
    if have_service.timeout_seconds != service["timeout_seconds"]:
        paths.append("service_config.timeout_seconds")
    if have_service.available_memory != service["available_memory"]:
        paths.append("service_config.available_memory")
    if have_service.max_instance_count != service["max_instance_count"]:
        paths.append("service_config.max_instance_count")
    trigger = wanted.get("event_trigger")
    have = fn.event_trigger if "event_trigger" in fn else None
    if trigger is None:
        if have is not None and have.pubsub_topic:
            paths.append("event_trigger")
    elif have is None or (have.pubsub_topic, have.event_type, have.service_account_email, have.retry_policy.name) != (
            trigger["pubsub_topic"], trigger["event_type"], trigger["service_account_email"], trigger["retry_policy"]):
        paths.append("event_trigger")
    if missing_labels(fn.labels, call):
        paths.append("labels")
    if fn.description != wanted["description"]:
        paths.append("description")
    return paths


def set_invokers(config: CloudFunctionConfig, service: str) -> bool:
    """Receivers: `allUsers` (the inter-cloud token is checked in code). Private functions: the
    twin's service account only (a public grant left from an earlier plan is taken back)."""
    run = run_services()
    member = f"serviceAccount:{account_email(config.service_account, project_of(config))}"
    add, remove = ({"allUsers"}, set()) if config.public else ({member}, {"allUsers", "allAuthenticatedUsers"})
    return change_policy(lambda: run.get_iam_policy(request={"resource": service}),
                         lambda p: run.set_iam_policy(request={"resource": service, "policy": p}),
                         INVOKER, add=add, remove=remove)


def _state(fn: Any) -> str:
    return str(fn.state.name)


def _messages(fn: Any) -> str:
    return "; ".join(m.message for m in fn.state_messages) or "no reason given"


@register("gcp", "cloud-function")
class CloudFunction(GcpResource[CloudFunctionConfig]):
    model = CloudFunctionConfig
    label = "Cloud Function"

    def describe(self, call: ResourceCall, config: CloudFunctionConfig) -> Any:
        return get_function(config)

    def converge(self, call: ResourceCall, config: CloudFunctionConfig, action: Action) -> EnsureResult:
        from google.cloud import functions_v2
        from google.protobuf import field_mask_pb2

        client = functions()
        fn = self.found(call, config)
        token = call.pending.token if call.pending is not None else {}
        if fn is None:
            failed = operation_error(client, str(token["operation"])) if token.get("operation") else None
            if failed:
                raise PermanentError(f"Cloud Function {config.name} could not be created: {failed}")
            source = upload_package(call, config, build_package(config).data)
            wanted = wanted_function(call, config, source, {})
            op = client.create_function(request={
                "parent": function_name(config).rsplit("/functions/", 1)[0],
                "function": functions_v2.Function(wanted), "function_id": config.name})
            return pending(merge_action(action, "created"), f"Cloud Function {config.name} is being created",
                           operation=op.operation.name)
        state = _state(fn)
        if state in ("DEPLOYING", "DELETING"):
            return pending(action, f"Cloud Function {config.name} is {state}", **_carry(token))
        # Built (once per configuration) only past the state check: a DEPLOYING poll needs no package.
        source = upload_package(call, config, build_package(config).data)
        wanted = wanted_function(call, config, source, dict(fn.service_config.environment_variables))
        wanted["labels"] = {**dict(fn.labels), **wanted["labels"]}  # others' labels kept, as on buckets and topics
        if state == "FAILED":
            attempts = int(token.get("failed_deploys") or 0) + 1
            if attempts > MAX_DEPLOY_ATTEMPTS:
                raise PermanentError(f"Cloud Function {config.name} failed to deploy {MAX_DEPLOY_ATTEMPTS} times: "
                                     f"{_messages(fn)}")
            paths = ["build_config", "service_config", "labels", "description"] + (
                ["event_trigger"] if "event_trigger" in wanted else [])
        else:
            attempts = int(token.get("failed_deploys") or 0)
            paths = differences(fn, wanted, call)
        if paths:
            try:
                client.update_function(request={"function": functions_v2.Function(wanted),
                                                "update_mask": field_mask_pb2.FieldMask(paths=paths)})
            except _busy_errors() as exc:
                raise TransientError(f"Cloud Function {config.name}: another operation is in progress ({exc.message})") \
                    from None
            return pending(merge_action(action, "updated"), f"Cloud Function {config.name} is being deployed "
                           f"({', '.join(paths)})", failed_deploys=attempts)
        if state != "ACTIVE":
            raise PermanentError(f"Cloud Function {config.name} is {state}: {_messages(fn)}")
        if set_invokers(config, fn.service_config.service):
            action = merge_action(action, "updated")
        self._drop_stale_packages(call, config, source[1])
        return EnsureResult(action=action, outputs=self._outputs(call, fn))

    def _drop_stale_packages(self, call: ResourceCall, config: CloudFunctionConfig, keep: str) -> None:
        """Earlier packages of this function in the functions bucket (the deployed one is kept)."""
        from google.api_core.exceptions import NotFound

        client = storage(project_of(config))
        bucket = client.lookup_bucket(naming(call).functions_bucket())
        if bucket is None or not bucket_is_ours(call, bucket):
            return
        for blob in client.list_blobs(bucket, prefix=f"{config.name}/"):
            if blob.name != keep:
                with contextlib.suppress(NotFound):
                    blob.delete()

    def _outputs(self, call: ResourceCall, fn: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        url = str(fn.service_config.uri or fn.url)
        for output in call.resource.produces:
            # `X_URL`, or keyed `X_URL:{key}` (a device's processor, an event action).
            if not output.split(":", 1)[0].endswith("_URL"):
                raise PermanentError(f"{call.resource.id} cannot produce {output}: a Cloud Function yields its URL")
            out[output] = url
        return out

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        fn = get_function(config)
        if fn is None:
            return ReadResult(exists=False)
        if not self.ours(call, config, fn):
            return ReadResult(exists=False, details={"owner": "another twin"})
        active = _state(fn) == "ACTIVE"
        return ReadResult(
            exists=True,
            outputs=self._outputs(call, fn) if active and fn.service_config.uri else {},
            details={
                "state": _state(fn),
                "url": fn.service_config.uri or None,
                "source": fn.build_config.source.storage_source.object_,
                "service_account": fn.service_config.service_account_email,
                "trigger_topic": fn.event_trigger.pubsub_topic if "event_trigger" in fn else None,
                # Names only: values may be secrets.
                "environment": sorted(fn.service_config.environment_variables),
            },
        )

    def apply_settings(self, call: ResourceCall) -> bool | Pending:
        """Merge the wired settings into the function's environment. A change is a new revision,
        which Google deploys in a minute or two: answered pending (the token holds whether this
        apply wrote, and the operation) until it serves, so no activity waits for it; a revision
        that failed is written again, up to `MAX_DEPLOY_ATTEMPTS` times."""
        from google.cloud import functions_v2
        from google.protobuf import field_mask_pb2

        config = self.config(call)
        token = dict(call.pending.token) if call.pending is not None else {}
        wrote, attempts = settings_written(call), int(token.get("attempts", 0))
        fn = self.found(call, config)  # another twin's function: refused
        if fn is None:
            raise TransientError(f"Cloud Function {config.name} does not exist yet; its settings are applied when "
                                 "it is created")
        rolling_out = f"Cloud Function {config.name}: its new settings are being deployed"
        state = _state(fn)
        if state == "DEPLOYING":
            # A revision is being deployed (ours, or one started elsewhere): settings follow it.
            return self.settings_pending(rolling_out, wrote, attempts=attempts, operation=token.get("operation"))
        failure = operation_error(functions(), str(token["operation"])) if token.get("operation") else None
        if state == "FAILED":
            failure = failure or "; ".join(m.message for m in fn.state_messages) or "the last deployment failed"
        if failure is not None and attempts >= MAX_DEPLOY_ATTEMPTS:
            raise PermanentError(f"Cloud Function {config.name}: its new settings failed to deploy {attempts} times "
                                 f"({failure})")
        if state not in ("ACTIVE", "FAILED"):
            raise TransientError(f"Cloud Function {config.name} is {state}; settings are applied after it")
        current = dict(fn.service_config.environment_variables)
        merged = with_settings(current, call.settings)
        if merged == current and failure is None:
            return wrote
        patch = functions_v2.Function(name=fn.name, service_config={"environment_variables": merged})
        try:
            op = functions().update_function(request={
                "function": patch, "update_mask": field_mask_pb2.FieldMask(paths=["service_config.environment_variables"])})
        except _busy_errors() as exc:
            raise TransientError(f"Cloud Function {config.name}: another operation is in progress ({exc.message})") \
                from None
        return self.settings_pending(rolling_out, True, attempts=attempts + 1, operation=op.operation.name)

    def remove(self, call: ResourceCall, config: CloudFunctionConfig, current: Any) -> bool:
        if _state(current) == "DELETING":
            return False
        try:
            functions().delete_function(request={"name": function_name(config)})
        except _busy_errors() as exc:
            raise TransientError(f"Cloud Function {config.name}: another operation is in progress ({exc.message})") \
                from None
        except _not_found():
            return True
        return False  # gone once a read says so

    def leftovers(self, call: ResourceCall, config: CloudFunctionConfig) -> bool:
        from google.api_core.exceptions import NotFound

        deleted = False
        client = storage(project_of(config))
        bucket = client.lookup_bucket(naming(call).functions_bucket())
        if bucket is None or not bucket_is_ours(call, bucket):
            return False  # gone with every package, or another twin's bucket: its objects are its own
        with contextlib.suppress(NotFound):  # the bucket (and so every package) is gone meanwhile
            for blob in client.list_blobs(bucket, prefix=f"{config.name}/"):
                blob.delete()
                deleted = True
        return deleted

    def remaining_parts(self, call: ResourceCall, config: CloudFunctionConfig) -> list[str]:
        return _packages_left(call, config)


def _packages_left(call: ResourceCall, config: CloudFunctionConfig) -> list[str]:
    from google.api_core.exceptions import NotFound

    client = storage(project_of(config))
    bucket = client.lookup_bucket(naming(call).functions_bucket())
    if bucket is None or not bucket_is_ours(call, bucket):
        return []
    with contextlib.suppress(NotFound):
        return [f"package {b.name}" for b in client.list_blobs(bucket, prefix=f"{config.name}/")]
    return []


def _carry(token: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in token.items() if k in ("operation", "failed_deploys")}


def _busy_errors() -> tuple[type[GoogleAPICallError], ...]:
    from google.api_core.exceptions import Aborted, Conflict

    return (Aborted, Conflict)


def _not_found() -> type[Exception]:
    from google.api_core.exceptions import NotFound

    return NotFound
