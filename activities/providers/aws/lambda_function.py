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

from activities import packages
from activities.providers.aws._common import (
    AwsResource,
    account_id,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    naming,
    pending,
    tags,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role, role_left
from activities.providers.lifecycle import merge_action, settings_written
from activities.providers.typed import with_settings
from activities.registry import register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.resources.aws import LambdaConfig

MEMORY_MB = 256
DEFAULT_TIMEOUT_S = 30
TIMER_TIMEOUT_S = 300
URL_SID = "FunctionURLPublicAccess"
URL_INVOKE_SID = "FunctionURLInvokeAllowPublicAccess"


# --- Lambda resource-policy permissions (also used by the IoT rule and the schedules) ---------


def _statements(region: str, function: str) -> dict[str, dict[str, Any]]:
    found = get_or_none(lambda: client("lambda", region).get_policy(FunctionName=function))
    if found is None:
        return {}
    doc = json.loads(found.get("Policy") or "{}")
    return {str(s.get("Sid")): s for s in doc.get("Statement") or []}


def ensure_permission(region: str, function: str, sid: str, **kwargs: Any) -> bool:
    """Add statement `sid` to `function`'s resource policy unless present; True if added."""
    if sid in _statements(region, function):
        return False
    try:
        client("lambda", region).add_permission(FunctionName=function, StatementId=sid, **kwargs)
    except ClientError as exc:
        if error_code(exc) == "ResourceConflictException" and sid in _statements(region, function):
            return False  # added by a concurrent run
        raise
    return True


def remove_permission(region: str, function: str, sid: str) -> bool:
    return ignore_missing(lambda: client("lambda", region).remove_permission(FunctionName=function, StatementId=sid))


# --- least privilege ------------------------------------------------------------------------


def _has(call: ResourceCall, config: LambdaConfig, setting: str) -> str | None:
    """The value a wired or configured setting has now (None when not set)."""
    value = call.settings.get(setting)
    if value:
        return value
    return config.environment.get(setting) or None


def policy_statements(call: ResourceCall, config: LambdaConfig) -> list[dict[str, Any]]:
    """The inline policy of this function's role: logs on its own log group plus exactly the
    calls its package makes (see `payload_functions/aws/`)."""
    name = config.name
    n = naming(call)
    reg, acct = config.region, account_id()
    package = str(config.package)

    def fn(function: str) -> str:
        return lambda_arn(reg, function)

    def has(setting: str) -> str | None:
        return _has(call, config, setting)

    def table() -> str:
        return f"arn:aws:dynamodb:{reg}:{acct}:table/{has(Setting.DYNAMODB_TABLE_NAME) or n.hot_table()}"

    def bucket(setting: str, default: str) -> str:
        return f"arn:aws:s3:::{has(setting) or default}"

    out = [
        allow(
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/{name}", f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/{name}:*"],
            "Logs",
        )
    ]
    invoke: list[str] = []
    hot_local = has(Setting.DYNAMODB_TABLE_NAME) is not None
    cold = bucket(Setting.COLD_S3_BUCKET_NAME, n.cold_bucket())
    archive = bucket(Setting.ARCHIVE_S3_BUCKET_NAME, n.archive_bucket())
    if package == "dispatcher":
        target = has(Setting.TARGET_FUNCTION) or "processor"
        invoke.append(fn(n.function("*-processor")) if target == "processor" else fn(n.function("connector")))
    elif package == "ingestion":
        invoke.append(fn(n.function("*-processor")))
    elif package == "processor" and not config.user_function:
        invoke.append(fn(n.function("persister")))
    elif package == "persister":
        if hot_local:
            out.append(allow(["dynamodb:PutItem"], [table()], "HotWrite"))
        if (has(Setting.USE_EVENT_CHECKING) or "").lower() == "true":
            invoke.append(fn(n.function("event-checker")))
    elif package == "event-checker":
        workspace = has(Setting.TWINMAKER_WORKSPACE_NAME)
        if workspace:
            ws = f"arn:aws:iottwinmaker:{reg}:{acct}:workspace/{workspace}"
            out.append(allow(["iottwinmaker:GetPropertyValue"], [ws, f"{ws}/*"], "TwinRead"))
        machine = has(Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN)
        if machine:
            out.append(allow(["states:StartExecution"], [machine], "Workflow"))
        if (has(Setting.USE_FEEDBACK) or "").lower() == "true" and not _feedback_is_remote(config):
            invoke.append(fn(n.function("event-feedback")))
        for rule in json.loads(has(Setting.EVENT_RULES) or "[]"):
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
        if has(Setting.COLD_S3_BUCKET_NAME):
            out.append(allow(["s3:PutObject"], [f"{cold}/*"], "ColdWrite"))
    elif package == "cold-writer":
        out.append(allow(["s3:PutObject"], [f"{cold}/*"], "ColdWrite"))
    elif package == "cold-to-archive-mover":
        out.append(allow(["s3:ListBucket"], [cold], "ColdList"))
        out.append(allow(["s3:GetObject", "s3:DeleteObject"], [f"{cold}/*"], "ColdMove"))
        if has(Setting.ARCHIVE_S3_BUCKET_NAME):
            out.append(allow(["s3:PutObject"], [f"{archive}/*"], "ArchiveWrite"))
    elif package == "archive-writer":
        out.append(allow(["s3:PutObject"], [f"{archive}/*"], "ArchiveWrite"))
    if invoke:
        out.append(allow(["lambda:InvokeFunction"], invoke, "Invoke"))
    return out


def _feedback_is_remote(config: LambdaConfig) -> bool:
    """The event checker sends feedback to L1's cloud over HTTP (no invoke of a local Lambda)."""
    from shared.contracts import DigitalTwinInfo
    from shared.wiring import sends_remote

    info = config.environment.get(Setting.DIGITAL_TWIN_INFO)
    if not info:
        return False
    providers = DigitalTwinInfo.from_json(info).providers
    return "L1" in providers and "L2" in providers and sends_remote(providers, "L2", "L1")


# --- package and configuration --------------------------------------------------------------


def build_package(config: LambdaConfig) -> Any:
    """The function's package: ours, with the users' code it runs (`activities.packages`)."""
    return packages.package("lambda", f"Lambda {config.name}", config)


def wanted_environment(call: ResourceCall, config: LambdaConfig, current: dict[str, str]) -> dict[str, str]:
    """Current variables (others' kept) + the plan's + the wired settings (None removes)."""
    return with_settings({**current, **config.environment}, call.settings)


def _config_changes(call: ResourceCall, config: LambdaConfig, conf: dict[str, Any], role_arn: str) -> dict[str, Any]:
    from payload_functions.packaging import LAMBDA_HANDLER

    changes: dict[str, Any] = {}
    if conf.get("Role") != role_arn:
        changes["Role"] = role_arn
    if conf.get("Runtime") != config.runtime:
        changes["Runtime"] = config.runtime
    if conf.get("Handler") != LAMBDA_HANDLER:
        changes["Handler"] = LAMBDA_HANDLER
    if int(conf.get("Timeout") or 0) != _timeout(config):
        changes["Timeout"] = _timeout(config)
    if int(conf.get("MemorySize") or 0) != MEMORY_MB:
        changes["MemorySize"] = MEMORY_MB
    current_env = dict((conf.get("Environment") or {}).get("Variables") or {})
    env = wanted_environment(call, config, current_env)
    if env != current_env:
        changes["Environment"] = {"Variables": env}
    return changes


def _timeout(config: LambdaConfig) -> int:
    """Timer functions (the movers) move a day's data in one run; the others answer one call."""
    return TIMER_TIMEOUT_S if config.trigger == "timer" else DEFAULT_TIMEOUT_S


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


def get_configuration(region: str, name: str) -> dict[str, Any] | None:
    return get_or_none(lambda: client("lambda", region).get_function_configuration(FunctionName=name))


@register("aws", "lambda")
class LambdaFunction(AwsResource[LambdaConfig]):
    model = LambdaConfig
    label = "Lambda"

    def describe(self, call: ResourceCall, config: LambdaConfig) -> dict[str, Any] | None:
        return get_configuration(config.region, config.name)

    def converge(self, call: ResourceCall, config: LambdaConfig, action: Action) -> EnsureResult:
        name, role_name = config.name, config.role_name
        lam = client("lambda", config.region)
        conf = self.found(call, config)  # another twin's function: refused before anything is written
        role_arn, role_changed = ensure_role(call, role_name, "lambda.amazonaws.com", policy_statements(call, config))
        if role_changed and action == "unchanged":
            action = "updated"
        package = build_package(config)
        if conf is None:
            from payload_functions.packaging import LAMBDA_HANDLER

            try:
                lam.create_function(
                    FunctionName=name,
                    Runtime=config.runtime,
                    Role=role_arn,
                    Handler=LAMBDA_HANDLER,
                    Code={"ZipFile": package.data},
                    Description=f"{call.resource.id} of twin {call.twin}",
                    Timeout=_timeout(config),
                    MemorySize=MEMORY_MB,
                    Environment={"Variables": wanted_environment(call, config, {})},
                    Tags=tags(call),
                )
            except ClientError as exc:
                if _role_not_ready(exc):
                    raise TransientError(f"Lambda {name}: role {role_name} is not assumable yet (IAM propagation)") from None
                raise
            return self._after_write(config, merge_action(action, "created"))
        _check_failed(name, conf)
        if _busy(conf):
            return pending(action, f"Lambda {name} is {conf.get('State')}/{conf.get('LastUpdateStatus')}")
        if conf.get("CodeSha256") != package.sha256:
            lam.update_function_code(FunctionName=name, ZipFile=package.data)
            return self._after_write(config, merge_action(action, "updated"))
        changes = _config_changes(call, config, conf, role_arn)
        if changes:
            try:
                lam.update_function_configuration(FunctionName=name, **changes)
            except ClientError as exc:
                if _role_not_ready(exc):
                    raise TransientError(f"Lambda {name}: role {role_name} is not assumable yet (IAM propagation)") from None
                raise
            return self._after_write(config, merge_action(action, "updated"))
        have_tags = get_or_none(lambda: lam.list_tags(Resource=conf["FunctionArn"])) or {}
        missing = {k: v for k, v in tags(call).items() if (have_tags.get("Tags") or {}).get(k) != v}
        if missing:
            lam.tag_resource(Resource=conf["FunctionArn"], Tags=missing)
            action = merge_action(action, "updated")
        url, url_changed = self._ensure_url(config)
        if url_changed:
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self._outputs(call, conf, url))

    def owner_tags(self, call: ResourceCall, config: LambdaConfig, current: Any) -> dict[str, str]:
        listed = client("lambda", config.region).list_tags(Resource=current["FunctionArn"])
        return dict(listed.get("Tags") or {})

    def _after_write(self, config: LambdaConfig, action: Action) -> EnsureResult:
        # Every write is followed by a poll: it re-reads the function, waits while it is
        # Pending/InProgress, then finishes the remaining steps (URL, permission).
        return pending(action, f"Lambda {config.name} is being {'created' if action == 'created' else 'updated'}")

    def _ensure_url(self, config: LambdaConfig) -> tuple[str, bool]:
        name, region = config.name, config.region
        lam = client("lambda", region)
        current = get_or_none(lambda: lam.get_function_url_config(FunctionName=name))
        changed = False
        if not config.function_url:
            if current is not None:
                lam.delete_function_url_config(FunctionName=name)
                remove_permission(region, name, URL_SID)
                remove_permission(region, name, URL_INVOKE_SID)
                changed = True
            return "", changed
        if current is None:
            current = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
            changed = True
        elif current.get("AuthType") != "NONE":
            current = lam.update_function_url_config(FunctionName=name, AuthType="NONE")
            changed = True
        # Public URL: anyone may call it; the payload checks X-Inter-Cloud-Token in constant time.
        if ensure_permission(region, name, URL_SID, Action="lambda:InvokeFunctionUrl", Principal="*",
                             FunctionUrlAuthType="NONE"):
            changed = True
        if ensure_permission(region, name, URL_INVOKE_SID, Action="lambda:InvokeFunction", Principal="*",
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
        config = self.config(call)
        conf = self.describe(call, config)
        if conf is None:
            return ReadResult(exists=False)
        url_conf = get_or_none(lambda: client("lambda", config.region).get_function_url_config(FunctionName=config.name))
        url = str(url_conf["FunctionUrl"]) if url_conf else ""
        try:
            outputs = self._outputs(call, conf, url)
        except PermanentError:
            outputs = {}
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

    def apply_settings(self, call: ResourceCall) -> bool | Pending:
        """Merge the wired settings into the function's environment. AWS applies a configuration
        update in a few seconds (`LastUpdateStatus: InProgress`, meanwhile invocations still see
        the old values): answered pending until it is `Successful`, so a rotation moves on only
        once the function holds the new token. Another twin's function is refused."""
        config = self.config(call)
        wrote = settings_written(call)
        conf = self.found(call, config)
        if conf is None:
            raise TransientError(f"Lambda {config.name} does not exist yet; its settings are applied when it is created")
        _check_failed(config.name, conf)
        if _busy(conf):  # an update under way (ours, or one made elsewhere): the settings follow it
            return self.settings_pending(f"Lambda {config.name}: its new settings are being applied", wrote)
        if wrote and conf.get("LastUpdateStatus") == "Failed":
            raise PermanentError(f"Lambda {config.name}: its new settings were not applied: "
                                 f"{conf.get('LastUpdateStatusReason') or 'no reason given'}")
        current = dict((conf.get("Environment") or {}).get("Variables") or {})
        merged = with_settings(current, call.settings)
        if merged == current:
            return wrote
        client("lambda", config.region).update_function_configuration(FunctionName=config.name,
                                                                      Environment={"Variables": merged})
        return self.settings_pending(f"Lambda {config.name}: its new settings are being applied", True)

    def remove(self, call: ResourceCall, config: LambdaConfig, current: Any) -> bool:
        # Its URL and resource policy go with it.
        ignore_missing(lambda: client("lambda", config.region).delete_function(FunctionName=config.name))
        return True

    def leftovers(self, call: ResourceCall, config: LambdaConfig) -> bool:
        return delete_role(call, config.role_name)

    def remaining_parts(self, call: ResourceCall, config: LambdaConfig) -> list[str]:
        return role_left(call, config.role_name)
