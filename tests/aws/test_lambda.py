"""Lambda functions: create, reconcile, settings, Function URL, least privilege, IAM propagation,
waiting for State/LastUpdateStatus through Pending, delete."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activities.providers.aws._common import client
from activities.registry import provider_for
from sandbox.core.profiles import Profile
from shared.engine.errors import TransientError


def _policy(role: str) -> dict[str, Any]:
    doc = client("iam").get_role_policy(RoleName=role, PolicyName="least-privilege")["PolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else dict(doc)


def test_dispatcher_lifecycle(walker: Any, sandbox: Any, ops: Any) -> None:
    w = walker()
    rid = "aws/L1/dispatcher"
    first = w.ensure(rid)
    assert first.action == "created"
    got = w.read(rid)
    assert got.exists and got.details["state"] == "Active" and got.details["runtime"] == "python3.12"
    assert "DIGITAL_TWIN_INFO" in got.details["environment"]
    mark, seq = ops.mark(), sandbox.seq()
    again = w.ensure(rid)
    assert again.action == "unchanged"
    assert ops.writes(mark) == []
    assert sandbox.wire_mutations(seq) == []
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    assert not w.read(rid).exists
    assert client("iam").list_roles()["Roles"] == [] or all(
        r["RoleName"] != f"{w.twin}-dispatcher" for r in client("iam").list_roles()["Roles"])


def test_code_is_updated_only_when_the_package_hash_differs(walker: Any, ops: Any) -> None:
    w = walker()
    rid = "aws/L2/processor-climate-sensor-1"
    w.ensure(rid)
    name = f"{w.twin}-climate-sensor-1-processor"
    lam = client("lambda")
    # Someone else deployed other code: the next ensure puts ours back (and only the code).
    lam.update_function_code(FunctionName=name, ZipFile=_other_zip())
    mark = ops.mark()
    assert w.ensure(rid).action == "updated"
    assert ops.writes(mark) == ["lambda:UpdateFunctionCode"]
    from payload_functions.packaging import build_lambda_package

    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == build_lambda_package("processor").sha256
    mark = ops.mark()
    assert w.ensure(rid).action == "unchanged"
    assert ops.writes(mark) == []
    w.delete(rid)


def _other_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


def test_apply_settings_keeps_other_variables_and_skips_when_current(walker: Any, ops: Any) -> None:
    w = walker()
    rid = "aws/L2/persister"
    w.ensure_all(upto=rid)
    name = f"{w.twin}-persister"
    lam = client("lambda")
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert env["DYNAMODB_TABLE_NAME"] == f"{w.twin}-hot-iot-data" and env["USE_EVENT_CHECKING"] == "true"
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {**env, "OPERATOR_NOTE": "keep"}})
    polls = w.settings_polls
    assert w.apply_settings(rid, {"REMOTE_ADT_PUSHER_URL": "https://pusher.example/api/adt-pusher",
                                  "INTER_CLOUD_TOKEN": "t0ken-value"}) is True
    assert w.settings_polls > polls  # asked again until the update was Successful
    after = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert after["OPERATOR_NOTE"] == "keep" and after["DYNAMODB_TABLE_NAME"] == env["DYNAMODB_TABLE_NAME"]
    assert after["REMOTE_ADT_PUSHER_URL"] == "https://pusher.example/api/adt-pusher"
    mark, polls = ops.mark(), w.settings_polls
    assert w.apply_settings(rid, {"REMOTE_ADT_PUSHER_URL": "https://pusher.example/api/adt-pusher",
                                  "INTER_CLOUD_TOKEN": "t0ken-value"}) is False
    assert ops.writes(mark) == [] and w.settings_polls == polls
    # None removes a setting.
    assert w.apply_settings(rid, {"REMOTE_ADT_PUSHER_URL": None}) is True
    assert "REMOTE_ADT_PUSHER_URL" not in lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    # A re-ensure keeps the operator's variable too (read-modify-write, not replace).
    w.ensure(rid)
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]["OPERATOR_NOTE"] == "keep"
    w.delete_all(upto=rid)


def test_least_privilege_policies(walker: Any) -> None:
    w = walker()
    w.ensure_all(upto="aws/L2/persister")
    doc = _policy(f"{w.twin}-persister")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert _list(by_sid["HotWrite"]["Action"]) == ["dynamodb:PutItem"]
    assert _list(by_sid["HotWrite"]["Resource"]) == [f"arn:aws:dynamodb:eu-central-1:123456789012:table/{w.twin}-hot-iot-data"]
    assert _list(by_sid["Invoke"]["Action"]) == ["lambda:InvokeFunction"]
    assert _list(by_sid["Invoke"]["Resource"]) == [
        f"arn:aws:lambda:eu-central-1:123456789012:function:{w.twin}-event-checker"]
    for statement in doc["Statement"]:
        assert "*" not in _list(statement["Resource"]) and not any(a.endswith(":*") for a in _list(statement["Action"]))
    w.ensure("aws/L1/dispatcher")
    dispatcher = {s["Sid"]: s for s in _policy(f"{w.twin}-dispatcher")["Statement"]}
    assert _list(dispatcher["Invoke"]["Resource"]) == [
        f"arn:aws:lambda:eu-central-1:123456789012:function:{w.twin}-*-processor"]
    w.delete("aws/L1/dispatcher")
    w.delete_all(upto="aws/L2/persister")


def _list(value: Any) -> list[str]:
    return sorted(value) if isinstance(value, list) else [value]


def test_receiver_gets_a_public_function_url(walker: Any, ops: Any) -> None:
    w = walker("aws-to-azure")
    rid = "aws/L0/hot-reader"
    result = w.ensure_all(upto=rid)[rid]
    assert result.action == "created"
    url = result.outputs["HOT_READER_URL"]
    assert url.startswith(("https://", "http://127.0.0.1")) and "lambda-url" in url
    name = f"{w.twin}-hot-reader"
    assert client("lambda").get_function_url_config(FunctionName=name)["AuthType"] == "NONE"
    statements = json.loads(client("lambda").get_policy(FunctionName=name)["Policy"])["Statement"]
    public = [s for s in statements if s["Sid"] == "FunctionURLPublicAccess"]
    assert public and public[0]["Action"] == "lambda:InvokeFunctionUrl" and public[0]["Principal"] in ("*", {"AWS": "*"})
    env = client("lambda").get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert env["INTER_CLOUD_TOKEN"] == w.outputs["control/setup/inter-cloud-token"]["INTER_CLOUD_TOKEN"]
    mark = ops.mark()
    assert w.ensure(rid).outputs == result.outputs
    assert ops.writes(mark) == []
    w.delete_all(upto=rid)


def test_waits_for_pending_and_retries_iam_propagation(walker: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L1/dispatcher"
    r = w.plan.resource(rid)
    provider = provider_for(r.provider, r.kind)
    # Lambda takes ~1 s to become Active; a new role takes 0.5 s to be assumable.
    sandbox.sb.ctx.faults.profile = Profile("slow-lambda", delay_scale=0.2, rbac_propagation_seconds=0.5)
    decided = provider.ensure(w.call(rid))  # nothing there: `created` is decided before anything is made
    assert decided.action == "created" and decided.pending is not None and decided.pending.poll_after_seconds == 0
    with pytest.raises(TransientError, match="not assumable yet"):
        provider.poll(w.call(rid, decided.pending))
    result = None
    for _ in range(100):
        try:
            result = provider.poll(w.call(rid, decided.pending))
            break
        except TransientError:
            import time

            time.sleep(0.05)
    assert result is not None and result.pending is not None and result.action == "created"
    assert client("lambda").get_function_configuration(FunctionName=f"{w.twin}-dispatcher")["State"] == "Pending"
    done = w.drive(rid, result)
    assert done.action == "created" and w.polls >= 1
    assert w.read(rid).details["state"] == "Active"
    sandbox.profile("instant")
    w.delete(rid)


def test_event_feedback_publishes_only_to_feedback_topics(walker: Any) -> None:
    w = walker()
    rid = "aws/L2/event-feedback"
    assert w.ensure_all(upto=rid)[rid].action == "created"
    env = client("lambda").get_function_configuration(FunctionName=f"{w.twin}-event-feedback")["Environment"]["Variables"]
    assert env["IOT_ENDPOINT"] == w.outputs["aws/L1/iot-rule"]["IOT_ENDPOINT"]
    by_sid = {s["Sid"]: s for s in _policy(f"{w.twin}-event-feedback")["Statement"]}
    assert _list(by_sid["Feedback"]["Action"]) == ["iot:Publish"]
    assert _list(by_sid["Feedback"]["Resource"]) == [
        f"arn:aws:iot:eu-central-1:123456789012:topic/{w.twin}/feedback/*"]
    w.delete_all(upto=rid)
