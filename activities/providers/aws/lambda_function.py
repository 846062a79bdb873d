"""Lambda functions (kind `lambda`): the function's IAM role with a least-privilege inline policy,
the code from our reproducible package, the environment, and for receivers a Function URL.

Lifecycle, Terraform-style, all in this file:
- ensure: role (+ policy) -> create the function, or update code only when the package hash
  differs from `CodeSha256` and configuration only when a field differs -> wait for `State` /
  `LastUpdateStatus` through `Pending` + `poll` -> Function URL (AuthType NONE; the token is
  checked in code) and its public invoke permission. IAM propagation: Lambda's "role cannot be
  assumed" error is a `TransientError` (the engine retries the call).
- apply_settings: read-modify-write of the environment (other variables kept; no call when current).
- delete: the function (its URL and policy go with it), then the role.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import (
    account_id,
    action_from,
    cfg,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    merge_action,
    name_of,
    naming,
    pending,
    region,
    tags,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role
from activities.registry import Provider, register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT_S = 30
TIMER_TIMEOUT_S = 300
URL_SID = "FunctionURLPublicAccess"
URL_INVOKE_SID = "FunctionURLInvokeAllowPublicAccess"


# --- Lambda resource-policy permissions (also used by the IoT rule and the schedules) ---------


def _statements(call: ResourceCall, function: str) -> dict[str, dict[str, Any]]:
    found = get_or_none(lambda: client("lambda", call).get_policy(FunctionName=function))
    if found is None:
        return {}
    doc = json.loads(found.get("Policy") or "{}")
    return {str(s.get("Sid")): s for s in doc.get("Statement") or []}


def ensure_permission(call: ResourceCall, function: str, sid: str, **kwargs: Any) -> bool:
    """Add statement `sid` to `function`'s resource policy unless present; True if added."""
    if sid in _statements(call, function):
        return False
    try:
        client("lambda", call).add_permission(FunctionName=function, StatementId=sid, **kwargs)
    except ClientError as exc:
        if error_code(exc) == "ResourceConflictException" and sid in _statements(call, function):
            return False  # added by a concurrent run
        raise
    return True


def remove_permission(call: ResourceCall, function: str, sid: str) -> bool:
    return ignore_missing(lambda: client("lambda", call).remove_permission(FunctionName=function, StatementId=sid))


# --- least privilege ------------------------------------------------------------------------


def _has(call: ResourceCall, setting: str) -> str | None:
    """The value a wired or configured setting has now (None when not set)."""
    value = call.settings.get(setting)
    if value:
        return value
    env = cfg(call, "environment", {}) or {}
    found = env.get(setting)
    return str(found) if found else None


def policy_statements(call: ResourceCall) -> list[dict[str, Any]]:
    """The inline policy of this function's role: logs on its own log group plus exactly the
    calls its package makes (see `payload_functions/aws/`)."""
    name = name_of(call)
    n = naming(call)
    reg, acct = region(call), account_id(call)
    package = str(cfg(call, "package", ""))

    def fn(function: str) -> str:
        return lambda_arn(call, function)

    def table() -> str:
        return f"arn:aws:dynamodb:{reg}:{acct}:table/{_has(call, Setting.DYNAMODB_TABLE_NAME) or n.hot_table()}"

    def bucket(setting: str, default: str) -> str:
        return f"arn:aws:s3:::{_has(call, setting) or default}"

    out = [
        allow(
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/{name}", f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/{name}:*"],
            "Logs",
        )
    ]
    invoke: list[str] = []
    hot_local = _has(call, Setting.DYNAMODB_TABLE_NAME) is not None
    cold = bucket(Setting.COLD_S3_BUCKET_NAME, n.cold_bucket())
    archive = bucket(Setting.ARCHIVE_S3_BUCKET_NAME, n.archive_bucket())
    if package == "dispatcher":
        target = _has(call, Setting.TARGET_FUNCTION) or "processor"
        invoke.append(fn(n.function("*-processor")) if target == "processor" else fn(n.function("connector")))
    elif package == "ingestion":
        invoke.append(fn(n.function("*-processor")))
    elif package == "processor" and not cfg(call, "user_function"):
        invoke.append(fn(n.function("persister")))
    elif package == "persister":
        if hot_local:
            out.append(allow(["dynamodb:PutItem"], [table()], "HotWrite"))
        if (_has(call, Setting.USE_EVENT_CHECKING) or "").lower() == "true":
            invoke.append(fn(n.function("event-checker")))
    elif package == "event-checker":
        workspace = _has(call, Setting.TWINMAKER_WORKSPACE_NAME)
        if workspace:
            ws = f"arn:aws:iottwinmaker:{reg}:{acct}:workspace/{workspace}"
            out.append(allow(["iottwinmaker:GetPropertyValue"], [ws, f"{ws}/*"], "TwinRead"))
        machine = _has(call, Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN)
        if machine:
            out.append(allow(["states:StartExecution"], [machine], "Workflow"))
        if (_has(call, Setting.USE_FEEDBACK) or "").lower() == "true":
            invoke.append(fn(n.function("event-feedback")))
        for rule in json.loads(_has(call, Setting.EVENT_RULES) or "[]"):
            action = rule.get("action") or {} if isinstance(rule, dict) else {}
            for key in ("functionName", "functionNameB"):
                if action.get(key):
                    invoke.append(fn(n.event_action(str(action[key]))))
    elif package == "event-feedback":
        topic = n.feedback_topic("*")
        out.append(allow(["iot:Publish"], [f"arn:aws:iot:{reg}:{acct}:topic/{topic}"], "Feedback"))
    elif package in ("hot-reader", "hot-reader-last-entry"):
        out.append(allow(["dynamodb:Query"], [table()], "HotRead"))
    elif package == "hot-writer":
        out.append(allow(["dynamodb:PutItem"], [table()], "HotWrite"))
    elif package == "hot-to-cold-mover":
        out.append(allow(["dynamodb:Scan", "dynamodb:DeleteItem"], [table()], "HotMove"))
        if _has(call, Setting.COLD_S3_BUCKET_NAME):
            out.append(allow(["s3:PutObject"], [f"{cold}/*"], "ColdWrite"))
    elif package == "cold-writer":
        out.append(allow(["s3:PutObject"], [f"{cold}/*"], "ColdWrite"))
    elif package == "cold-to-archive-mover":
        out.append(allow(["s3:ListBucket"], [cold], "ColdList"))
        out.append(allow(["s3:GetObject", "s3:DeleteObject"], [f"{cold}/*"], "ColdMove"))
        if _has(call, Setting.ARCHIVE_S3_BUCKET_NAME):
            out.append(allow(["s3:PutObject"], [f"{archive}/*"], "ArchiveWrite"))
    elif package == "archive-writer":
        out.append(allow(["s3:PutObject"], [f"{archive}/*"], "ArchiveWrite"))
    if invoke:
        out.append(allow(["lambda:InvokeFunction"], invoke, "Invoke"))
    return out


# --- package and configuration --------------------------------------------------------------


def build_package(call: ResourceCall) -> Any:
    from payload_functions.packaging import PackagingError, build_lambda_package

    package = str(cfg(call, "package", ""))
    try:
        # Packaging serialises its own parsing (shared.pysource), so parallel activities are safe.
        return build_lambda_package(package)
    except PackagingError as exc:
        raise PermanentError(f"Lambda {name_of(call)}: {exc}") from None


def wanted_environment(call: ResourceCall, current: dict[str, str]) -> dict[str, str]:
    """Current variables (others' kept) + the plan's + the wired settings (None removes)."""
    out = dict(current)
    out.update({str(k): str(v) for k, v in (cfg(call, "environment", {}) or {}).items()})
    for key, value in call.settings.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    return out


def _config_changes(call: ResourceCall, conf: dict[str, Any], role_arn: str) -> dict[str, Any]:
    from payload_functions.packaging import LAMBDA_HANDLER

    changes: dict[str, Any] = {}
    if conf.get("Role") != role_arn:
        changes["Role"] = role_arn
    if conf.get("Runtime") != cfg(call, "runtime", "python3.12"):
        changes["Runtime"] = cfg(call, "runtime", "python3.12")
    if conf.get("Handler") != LAMBDA_HANDLER:
        changes["Handler"] = LAMBDA_HANDLER
    if int(conf.get("Timeout") or 0) != _timeout(call):
        changes["Timeout"] = _timeout(call)
    if int(conf.get("MemorySize") or 0) != int(cfg(call, "memory_mb", DEFAULT_MEMORY_MB)):
        changes["MemorySize"] = int(cfg(call, "memory_mb", DEFAULT_MEMORY_MB))
    current_env = dict((conf.get("Environment") or {}).get("Variables") or {})
    env = wanted_environment(call, current_env)
    if env != current_env:
        changes["Environment"] = {"Variables": env}
    return changes


def _timeout(call: ResourceCall) -> int:
    default = TIMER_TIMEOUT_S if cfg(call, "trigger") == "timer" else DEFAULT_TIMEOUT_S
    return int(cfg(call, "timeout_s", default))


def _busy(conf: dict[str, Any]) -> bool:
    return conf.get("State") == "Pending" or conf.get("LastUpdateStatus") == "InProgress"


def _check_failed(name: str, conf: dict[str, Any]) -> None:
    if conf.get("State") == "Failed":
        raise PermanentError(f"Lambda {name} is in state Failed: {conf.get('StateReason', 'no reason given')}")


def _role_not_ready(exc: ClientError) -> bool:
    message = str(exc).lower()
    return error_code(exc) == "InvalidParameterValueException" and "role" in message and (
        "assume" in message or "does not exist" in message
    )


def get_configuration(call: ResourceCall, name: str) -> dict[str, Any] | None:
    return get_or_none(lambda: client("lambda", call).get_function_configuration(FunctionName=name))


@register("aws", "lambda")
class LambdaFunction(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._converge(call, "unchanged")

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self._converge(call, action_from(call))

    def _converge(self, call: ResourceCall, action: Action) -> EnsureResult:
        name = name_of(call)
        lam = client("lambda", call)
        role_name = str(cfg(call, "role_name", name))
        role_arn, role_changed = ensure_role(call, role_name, "lambda.amazonaws.com", policy_statements(call))
        if role_changed and action == "unchanged":
            action = "updated"
        package = build_package(call)
        conf = get_configuration(call, name)
        if conf is None:
            from payload_functions.packaging import LAMBDA_HANDLER

            try:
                lam.create_function(
                    FunctionName=name,
                    Runtime=cfg(call, "runtime", "python3.12"),
                    Role=role_arn,
                    Handler=LAMBDA_HANDLER,
                    Code={"ZipFile": package.data},
                    Description=f"{call.resource.id} of twin {call.twin}",
                    Timeout=_timeout(call),
                    MemorySize=int(cfg(call, "memory_mb", DEFAULT_MEMORY_MB)),
                    Environment={"Variables": wanted_environment(call, {})},
                    Tags=tags(call),
                )
            except ClientError as exc:
                if _role_not_ready(exc):
                    raise TransientError(f"Lambda {name}: role {role_name} is not assumable yet (IAM propagation)") from None
                raise
            return self._after_write(call, merge_action(action, "created"))
        _check_failed(name, conf)
        if _busy(conf):
            return pending(action, f"Lambda {name} is {conf.get('State')}/{conf.get('LastUpdateStatus')}")
        if conf.get("CodeSha256") != package.sha256:
            lam.update_function_code(FunctionName=name, ZipFile=package.data)
            return self._after_write(call, merge_action(action, "updated"))
        changes = _config_changes(call, conf, role_arn)
        if changes:
            try:
                lam.update_function_configuration(FunctionName=name, **changes)
            except ClientError as exc:
                if _role_not_ready(exc):
                    raise TransientError(f"Lambda {name}: role {role_name} is not assumable yet (IAM propagation)") from None
                raise
            return self._after_write(call, merge_action(action, "updated"))
        have_tags = get_or_none(lambda: lam.list_tags(Resource=conf["FunctionArn"])) or {}
        missing = {k: v for k, v in tags(call).items() if (have_tags.get("Tags") or {}).get(k) != v}
        if missing:
            lam.tag_resource(Resource=conf["FunctionArn"], Tags=missing)
            action = merge_action(action, "updated")
        url, url_changed = self._ensure_url(call, name)
        if url_changed:
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self._outputs(call, conf, url))

    def _after_write(self, call: ResourceCall, action: Action) -> EnsureResult:
        # Every write is followed by a poll: it re-reads the function, waits while it is
        # Pending/InProgress, then finishes the remaining steps (URL, permission).
        return pending(action, f"Lambda {name_of(call)} is being {'created' if action == 'created' else 'updated'}")

    def _ensure_url(self, call: ResourceCall, name: str) -> tuple[str, bool]:
        lam = client("lambda", call)
        wanted = bool(cfg(call, "function_url", False))
        current = get_or_none(lambda: lam.get_function_url_config(FunctionName=name))
        changed = False
        if not wanted:
            if current is not None:
                lam.delete_function_url_config(FunctionName=name)
                remove_permission(call, name, URL_SID)
                remove_permission(call, name, URL_INVOKE_SID)
                changed = True
            return "", changed
        if current is None:
            current = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
            changed = True
        elif current.get("AuthType") != "NONE":
            current = lam.update_function_url_config(FunctionName=name, AuthType="NONE")
            changed = True
        # Public URL: anyone may call it; the payload checks X-Inter-Cloud-Token in constant time.
        if ensure_permission(call, name, URL_SID, Action="lambda:InvokeFunctionUrl", Principal="*",
                             FunctionUrlAuthType="NONE"):
            changed = True
        if ensure_permission(call, name, URL_INVOKE_SID, Action="lambda:InvokeFunction", Principal="*",
                             InvokedViaFunctionUrl=True):
            changed = True
        return str(current["FunctionUrl"]), changed

    def _outputs(self, call: ResourceCall, conf: dict[str, Any], url: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for output in call.resource.produces:
            if output.endswith("_ARN"):
                out[output] = str(conf["FunctionArn"])
            elif output.endswith("_URL"):
                if not url:
                    raise PermanentError(f"{call.resource.id} produces {output} but config.function_url is false")
                out[output] = url
        return out

    def read(self, call: ResourceCall) -> ReadResult:
        name = name_of(call)
        conf = get_configuration(call, name)
        if conf is None:
            return ReadResult(exists=False)
        url_conf = get_or_none(lambda: client("lambda", call).get_function_url_config(FunctionName=name))
        url = str(url_conf["FunctionUrl"]) if url_conf else ""
        outputs = {o: v for o, v in self._outputs_safe(call, conf, url).items()}
        env = (conf.get("Environment") or {}).get("Variables") or {}
        return ReadResult(
            exists=True,
            outputs=outputs,
            details={
                "arn": conf.get("FunctionArn"),
                "state": conf.get("State"),
                "last_update_status": conf.get("LastUpdateStatus"),
                "code_sha256": conf.get("CodeSha256"),
                "runtime": conf.get("Runtime"),
                "role": conf.get("Role"),
                # Names only: values may be secrets.
                "environment": sorted(env),
                "function_url": url or None,
            },
        )

    def _outputs_safe(self, call: ResourceCall, conf: dict[str, Any], url: str) -> dict[str, str]:
        try:
            return self._outputs(call, conf, url)
        except PermanentError:
            return {}

    def apply_settings(self, call: ResourceCall) -> bool:
        name = name_of(call)
        conf = get_configuration(call, name)
        if conf is None:
            raise TransientError(f"Lambda {name} does not exist yet; its settings are applied when it is created")
        if _busy(conf):
            raise TransientError(f"Lambda {name} is being updated; settings are applied after it")
        current = dict((conf.get("Environment") or {}).get("Variables") or {})
        merged = dict(current)
        for key, value in call.settings.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        if merged == current:
            return False
        client("lambda", call).update_function_configuration(FunctionName=name, Environment={"Variables": merged})
        return True

    def delete(self, call: ResourceCall) -> EnsureResult:
        name = name_of(call)
        deleted = ignore_missing(lambda: client("lambda", call).delete_function(FunctionName=name))
        role_deleted = delete_role(call, str(cfg(call, "role_name", name)))
        return EnsureResult(action="deleted" if deleted or role_deleted else "absent")
