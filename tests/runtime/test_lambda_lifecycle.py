"""Lambda worker processes end with the functions they serve: on reset and when the sandbox stops.
(Its own module: moto's state is process-wide, so this sandbox's reset must not meet another's.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest

from sandbox.server import Sandbox

pytestmark = pytest.mark.slow

FILES = "def handler(event, context):\n    return {'ok': True}\n"


def _create(sb: Sandbox, name: str) -> None:
    import io
    import zipfile

    aws = sb.endpoints["aws"]
    kw = {"endpoint_url": aws["endpoint_url"], "region_name": aws["region"], "aws_access_key_id": "t",
          "aws_secret_access_key": "t"}
    role = boto3.client("iam", **kw).create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", FILES)
    lam = boto3.client("lambda", **kw)
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="lambda_function.handler",
                        Code={"ZipFile": buf.getvalue()}, Timeout=30)
    assert json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == {"ok": True}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_no_worker_process_outlives_reset_or_stop(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path / "sb", profile="instant", with_blob=False, with_aws=True)
    sb.start()
    pids: list[int] = []
    try:
        _create(sb, "short-lived")
        runner = sb.aws.execution.runner
        pids += [w.proc.pid for pool in runner._pools.values() for w in pool.workers]
        assert len(pids) == 1 and _alive(pids[0])
        sb.aws.reset()
        assert runner._pools == {} and not _alive(pids[0])
        _create(sb, "short-lived")
        pids += [w.proc.pid for pool in runner._pools.values() for w in pool.workers]
        assert len(pids) == 2 and _alive(pids[1])
    finally:
        sb.stop()
    assert not any(_alive(p) for p in pids)
