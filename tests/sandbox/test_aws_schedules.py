"""EventBridge scheduled rules in the sandbox: expressions, firing on schedule (with the
scheduler's clock driven by the test), enabled/disabled/deleted rules, and the control
endpoint's run-now (`POST {control}/aws/rules/{name}/run`), all through real boto3 clients."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from sandbox.aws.schedules import ScheduleExpressionError, parse_expression
from sandbox.server import Sandbox

HANDLER = '''
import json
import os


def handler(event, context):
    with open(os.environ["EVENT_LOG"], "a") as out:
        out.write(json.dumps({"function": context.function_name, "event": event}) + "\\n")
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"seen": event.get("time") if isinstance(event, dict) else None}
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", HANDLER)
    return buf.getvalue()


class Env:
    def __init__(self, sb: Sandbox, log: Path) -> None:
        self.sb = sb
        self.log = log
        aws = sb.endpoints["aws"]
        kw: dict[str, Any] = {"endpoint_url": aws["endpoint_url"], "region_name": aws["region"],
                              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.lam = boto3.client("lambda", **kw)
        self.events = boto3.client("events", **kw)
        role = boto3.client("iam", **kw).create_role(RoleName="schedules-test", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        self.role = role["Role"]["Arn"]

    def function(self, name: str) -> str:
        arn = self.lam.create_function(
            FunctionName=name, Runtime="python3.11", Role=self.role, Handler="lambda_function.handler",
            Code={"ZipFile": _zip()}, Timeout=30, Environment={"Variables": {"EVENT_LOG": str(self.log)}})["FunctionArn"]
        self.lam.get_waiter("function_active_v2").wait(FunctionName=name)
        return str(arn)

    def rule(self, name: str, expression: str, function: str, **target: Any) -> str:
        arn = self.events.put_rule(Name=name, ScheduleExpression=expression, State="ENABLED")["RuleArn"]
        self.events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": self.function(function), **target}])
        return str(arn)

    def seen(self, function: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [line["event"] for line in lines if line["function"] == function]

    def wait_seen(self, function: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.seen(function)) < count:
            assert time.monotonic() < deadline, f"{function}: {len(self.seen(function))} of {count} invocations"
            time.sleep(0.05)
        return self.seen(function)

    def tick(self, now: datetime) -> None:
        """One pass of the scheduler as at `now`, on the proxy's loop (where it runs)."""
        schedules = self.sb.aws.execution.schedules

        async def run() -> None:
            schedules.tick(now)

        self.sb.aws._server.call(run())

    def run(self, name: str, body: Any = None) -> tuple[int, Any]:
        url = f"{self.sb.endpoints['control']}/aws/rules/{name}/run"
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("schedules")
    sb = Sandbox(tmp / "sandbox", profile="instant", with_blob=False, with_aws=True, with_function_apps=False)
    sb.start()
    try:
        yield Env(sb, tmp / "events.log")
    finally:
        sb.aws.reset()  # moto's state is process-wide
        sb.stop()


def test_parse_expressions() -> None:
    start = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)
    assert parse_expression("rate(5 minutes)").next_after(start, start) == start + timedelta(minutes=5)
    assert parse_expression("rate(1 day)").next_after(start + timedelta(days=1), start) == start + timedelta(days=2)
    daily = parse_expression("cron(0 0 * * ? *)")
    assert daily.next_after(start, start) == datetime(2026, 3, 2, tzinfo=UTC)
    # Day-of-week 1-7 is SUN-SAT on AWS: 2 is Monday (2026-03-02 is a Monday).
    monday = parse_expression("cron(15 10 ? * 2 *)")
    assert monday.next_after(start, start) == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    assert parse_expression("cron(0 12 ? * MON-FRI *)").next_after(start, start) == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert parse_expression("cron(0 0 1 1 ? 2028)").next_after(start, start) == datetime(2028, 1, 1, tzinfo=UTC)
    for bad, why in [("rate(1 minutes)", "singular"), ("rate(2 hour)", "plural"), ("rate(0 minutes)", "at least 1"),
                     ("every day", "rate"), ("cron(0 0 * * *)", "6 fields"), ("cron(0 0 * * 1 *)", "'?'"),
                     ("cron(0 0 ? * ? *)", "'?'"), ("cron(0 0 1W * ? *)", "W"), ("cron(0 0 1 1 ? 2020)", "no future"),
                     ("cron(99 0 * * ? *)", "not a valid")]:
        with pytest.raises(ScheduleExpressionError, match=why):
            parse_expression(bad)


def test_a_rule_fires_its_lambda_on_schedule(env: Env) -> None:
    rule_arn = env.rule("every-minute", "rate(1 minute)", "sched-target")
    t0 = datetime.now(UTC)
    env.tick(t0)
    env.tick(t0 + timedelta(seconds=50))
    time.sleep(0.5)
    assert env.seen("sched-target") == []
    env.tick(t0 + timedelta(seconds=61))
    event = env.wait_seen("sched-target", 1)[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [rule_arn] and event["detail"] == {} and event["version"] == "0"
    assert event["region"] == env.sb.endpoints["aws"]["region"] and event["id"]
    fired = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    assert t0 + timedelta(seconds=58) <= fired <= t0 + timedelta(seconds=61)
    env.tick(t0 + timedelta(seconds=62))  # the same occurrence fires once
    env.tick(t0 + timedelta(seconds=121))
    assert len(env.wait_seen("sched-target", 2)) == 2
    time.sleep(0.5)
    assert len(env.seen("sched-target")) == 2

    env.events.disable_rule(Name="every-minute")
    env.tick(t0 + timedelta(seconds=400))
    env.events.enable_rule(Name="every-minute")
    env.tick(t0 + timedelta(seconds=401))  # re-enabled: counts from now again
    env.events.remove_targets(Rule="every-minute", Ids=["t"])
    env.events.delete_rule(Name="every-minute")
    env.tick(t0 + timedelta(seconds=900))
    time.sleep(0.5)
    assert len(env.seen("sched-target")) == 2
    assert not any(t.arn == rule_arn for t in env.sb.aws.execution.schedules._tracked.values())


def test_constant_input_and_problems(env: Env) -> None:
    env.rule("with-input", "rate(1 minute)", "input-target", Input=json.dumps({"constant": 1}))
    status, body = env.run("with-input")
    assert status == 200, body
    assert env.wait_seen("input-target", 1) == [{"constant": 1}]
    env.events.put_rule(Name="bad-expression", ScheduleExpression="rate(1 minute)", State="ENABLED")
    env.events.put_targets(Rule="bad-expression", Targets=[{"Id": "q", "Arn": "arn:aws:sqs:eu-central-1:123456789012:q"}])
    status, body = env.run("bad-expression")
    assert status == 200 and body["invocations"] == [] and "not a Lambda function" in body["problems"][0]


def test_run_now_through_the_control_endpoint(env: Env) -> None:
    rule_arn = env.rule("daily-mover", "cron(0 0 * * ? *)", "run-target")
    status, body = env.run("daily-mover")
    assert status == 200, body
    [outcome] = body["invocations"]
    assert outcome["ok"] is True and outcome["function"] == "run-target" and outcome["target"] == "t"
    assert body["arn"] == rule_arn and outcome["payload"] == {"seen": body["time"]}
    event = env.seen("run-target")[0]
    assert event["resources"] == [rule_arn] and event["time"] == body["time"]

    status, body = env.run("daily-mover", {"time": "2031-05-01T00:00:00Z"})
    assert status == 200 and body["invocations"][0]["payload"] == {"seen": "2031-05-01T00:00:00Z"}

    env.events.put_targets(Rule="daily-mover", Targets=[{"Id": "t", "Arn": env.lam.get_function(
        FunctionName="run-target")["Configuration"]["FunctionArn"], "Input": json.dumps({"fail": True})}])
    status, body = env.run("daily-mover")
    assert status == 200 and body["invocations"][0]["ok"] is False
    assert body["invocations"][0]["payload"]["errorMessage"] == "asked to fail"

    status, body = env.run("daily-mover", {"time": "yesterday"})
    assert status == 400 and body["error"]["code"] == "InvalidTime"
    status, body = env.run("no-such-rule")
    assert status == 404 and "no-such-rule" in body["error"]["message"]
    env.events.disable_rule(Name="daily-mover")
    status, body = env.run("daily-mover")
    assert status == 409 and body["error"]["code"] == "RuleDisabled"
