"""The AWS Grafana datasource's workspace API key lives in Secrets Manager, so a reconcile from a
new process (`forget_cached_keys()`, or a second `python -m control_plane deploy`) reads the key
and writes nothing; a key near its expiry, or one Grafana rejects, is replaced by exactly one new
key; deleting the datasource deletes the key and its secret."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from activities.providers.aws import grafana_datasource as gd
from activities.providers.aws._common import client, default_region
from shared.engine.errors import PermanentError

ROOT = Path(__file__).resolve().parents[2]
RID = "aws/L5/grafana-datasource"
GRAFANA = "aws/L5/grafana"


def _ready(walker: Any) -> Any:
    """A twin with its Grafana workspace and hot reader, the datasource not yet ensured."""
    w = walker()
    w.ensure_all(upto=GRAFANA)
    w.ensure_all(upto="aws/L3_hot/hot-reader")
    return w


def _secret_name(w: Any) -> str:
    return f"twin-control-plane/{w.twin}-grafana/grafana-api-key"


def _secret(w: Any) -> dict[str, Any] | None:
    try:
        raw = client("secretsmanager").get_secret_value(SecretId=_secret_name(w))["SecretString"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    return dict(json.loads(raw))


def _workspace(w: Any) -> dict[str, Any]:
    found = [x for x in client("grafana").list_workspaces()["workspaces"] if x["name"] == f"{w.twin}-grafana"]
    assert len(found) == 1, found
    return dict(found[0])


def _live_key_names(sandbox: Any, w: Any) -> set[str]:
    """The workspace's unexpired API key names, as the sandbox's Grafana holds them (AWS has no
    API that lists them)."""
    ws = sandbox.sb.aws.grafana[default_region()].workspaces[_workspace(w)["id"]]
    now = time.time()
    return {name for name, k in ws.api_keys.items() if k.expires_at > now}


def _writes(ops: Any, mark: int) -> Counter[str]:
    return Counter(ops.writes(mark))


def test_first_ensure_makes_one_key_and_a_new_process_writes_nothing(walker: Any, ops: Any, sandbox: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    w = _ready(walker)
    gd.forget_cached_keys()
    mark, seq = ops.mark(), sandbox.seq()
    assert w.ensure(RID).action == "created"
    # The secret names the key before it is made (a crash cannot leak it), then holds it.
    made = Counter({"secretsmanager:CreateSecret": 1, "grafana:CreateWorkspaceApiKey": 1,
                    "secretsmanager:PutSecretValue": 1})
    assert _writes(ops, mark) == made
    assert Counter(sandbox.wire_mutations(seq)) == made
    stored = _secret(w)
    assert stored is not None and set(stored) == {"key", "keyName", "workspaceId", "expiresAt"}
    assert stored["workspaceId"] == _workspace(w)["id"]
    assert stored["keyName"].startswith(gd.KEY_NAME_PREFIX)
    # 30 days (the API's maximum), counted from before the call.
    assert time.time() + 30 * 86400 - 120 < stored["expiresAt"] <= time.time() + 30 * 86400
    assert _live_key_names(sandbox, w) == {stored["keyName"]}
    tags = client("secretsmanager").describe_secret(SecretId=_secret_name(w)).get("Tags") or []
    assert {t["Key"]: t["Value"] for t in tags} == {"DigitalTwin": w.twin, "ManagedBy": "twin-control-plane", "Layer": "L5"}

    # A new process: nothing cached, the key is read from the secret, nothing is written.
    gd.forget_cached_keys()
    mark, seq = ops.mark(), sandbox.seq()
    assert w.ensure(RID).action == "unchanged"
    assert ops.writes(mark) == [] and sandbox.wire_mutations(seq) == []
    assert ("secretsmanager", "GetSecretValue") in ops.since(mark)
    # The same process again: the key is cached, not even the secret is read.
    mark = ops.mark()
    assert w.ensure(RID).action == "unchanged"
    assert ops.writes(mark) == [] and [op for op in ops.since(mark) if op[0] == "secretsmanager"] == []
    assert _secret(w) == stored
    assert stored["key"] not in caplog.text
    w.delete(RID)


@pytest.mark.parametrize("left", [-3600.0, gd.KEY_RENEW_MARGIN_SECONDS - 60.0])
def test_an_expired_or_nearly_expired_key_is_replaced_by_exactly_one(left: float, walker: Any, ops: Any,
                                                                    sandbox: Any) -> None:
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    old = _secret(w)
    assert old is not None
    client("secretsmanager").put_secret_value(SecretId=_secret_name(w),
                                              SecretString=json.dumps({**old, "expiresAt": time.time() + left}))
    gd.forget_cached_keys()
    mark, seq = ops.mark(), sandbox.seq()
    assert w.ensure(RID).action == "unchanged"
    # One new key stored as a new version; the previous key deleted.
    assert _writes(ops, mark) == Counter({"grafana:CreateWorkspaceApiKey": 1, "secretsmanager:PutSecretValue": 2,
                                          "grafana:DeleteWorkspaceApiKey": 1})
    assert len(sandbox.wire_mutations(seq)) == 4
    new = _secret(w)
    assert new is not None and new["keyName"] != old["keyName"] and new["key"] != old["key"]
    assert new["expiresAt"] > time.time() + 29 * 86400
    assert _live_key_names(sandbox, w) == {new["keyName"]}
    # And that key is reused from then on, from a new process too.
    gd.forget_cached_keys()
    mark = ops.mark()
    assert w.ensure(RID).action == "unchanged"
    assert ops.writes(mark) == []
    w.delete(RID)


def test_a_key_grafana_rejects_is_replaced_once(walker: Any, ops: Any, sandbox: Any) -> None:
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    old = _secret(w)
    assert old is not None
    # Deleted behind the control plane's back (another tool, a console user): Grafana answers 401.
    client("grafana").delete_workspace_api_key(workspaceId=old["workspaceId"], keyName=old["keyName"])
    gd.forget_cached_keys()
    mark = ops.mark()
    assert w.ensure(RID).action == "unchanged"
    writes = _writes(ops, mark)
    assert writes["grafana:CreateWorkspaceApiKey"] == 1 and writes["secretsmanager:PutSecretValue"] == 2
    new = _secret(w)
    assert new is not None and new["keyName"] != old["keyName"]
    assert _live_key_names(sandbox, w) == {new["keyName"]}
    # A stored value that is not a key Grafana knows (same expiry, right workspace): replaced too.
    client("secretsmanager").put_secret_value(SecretId=_secret_name(w),
                                              SecretString=json.dumps({**new, "key": "not-a-grafana-key"}))
    gd.forget_cached_keys()
    mark = ops.mark()
    assert w.ensure(RID).action == "unchanged"
    assert _writes(ops, mark)["grafana:CreateWorkspaceApiKey"] == 1
    w.delete(RID)


def test_a_key_made_by_a_killed_attempt_is_found_and_deleted(walker: Any, sandbox: Any) -> None:
    """A process killed between `CreateWorkspaceApiKey` and storing the key: the secret names it
    (`pending`), so the next renewal deletes it, and so does the datasource's delete."""
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    held = _secret(w)
    assert held is not None
    ws_id = _workspace(w)["id"]
    for expire, finish in ((True, "ensure"), (False, "delete")):
        lost = gd.new_key_name()
        client("secretsmanager").put_secret_value(SecretId=_secret_name(w), SecretString=json.dumps(
            {**held, **({"expiresAt": time.time() - 60} if expire else {}),
             "pending": {"keyName": lost, "workspaceId": ws_id}}))
        client("grafana").create_workspace_api_key(keyName=lost, keyRole="ADMIN", secondsToLive=3600,
                                                   workspaceId=ws_id)  # what the killed attempt made
        assert lost in _live_key_names(sandbox, w)
        gd.forget_cached_keys()
        if finish == "ensure":
            assert w.ensure(RID).action == "unchanged"
            held = _secret(w)
            assert held is not None and "pending" not in held
            assert _live_key_names(sandbox, w) == {held["keyName"]}
        else:
            assert w.delete(RID).action == "deleted"
            assert _live_key_names(sandbox, w) == set() and _secret(w) is None


def test_a_second_rejection_fails_without_showing_the_key(walker: Any, sandbox: Any) -> None:
    w = _ready(walker)
    ws = _workspace(w)
    renewed: list[str] = []

    def renew(rejected: str) -> str:
        renewed.append(rejected)
        return "second-bad-key-value"

    api = gd.GrafanaApi(ws["endpoint"], "first-bad-key-value", renew=renew)
    with pytest.raises(PermanentError) as failure:
        api.find("anything")
    assert renewed == ["first-bad-key-value"]  # replaced once, then no more
    text = str(failure.value)
    assert "401" in text and "bad-key-value" not in text


def test_delete_removes_the_key_and_the_secret(walker: Any, ops: Any, sandbox: Any) -> None:
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    assert _secret(w) is not None
    assert w.delete(RID).action == "deleted"
    assert _secret(w) is None
    assert _live_key_names(sandbox, w) == set()
    assert client("secretsmanager").list_secrets(
        Filters=[{"Key": "name", "Values": [_secret_name(w)]}])["SecretList"] == []
    # Deleting again: a key for that one call, deleted right after; no secret is created.
    gd.forget_cached_keys()
    mark = ops.mark()
    assert w.delete(RID).action == "absent"
    assert _writes(ops, mark) == Counter({"grafana:CreateWorkspaceApiKey": 1, "grafana:DeleteWorkspaceApiKey": 1})
    assert _secret(w) is None and _live_key_names(sandbox, w) == set()


def test_delete_after_the_workspace_is_gone_still_removes_the_secret(walker: Any) -> None:
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    assert w.delete(GRAFANA).action == "deleted"
    assert _secret(w) is not None
    assert w.delete(RID).action == "absent"
    assert _secret(w) is None
    assert w.delete(RID).action == "absent"  # tolerant of nothing left at all


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "control_plane", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240, check=False)


@pytest.mark.slow
def test_a_second_cli_deploy_in_a_new_process_makes_no_mutating_call(sandbox: Any, specs: Any,
                                                                     tmp_path: Path) -> None:
    twin = specs.unique_twin()
    spec = specs.example("aws-only", twin)
    assert spec["providers"]["layer_5_provider"] == "aws"
    spec_file = tmp_path / "twin.json"
    spec_file.write_text(json.dumps(spec))
    state = tmp_path / "host"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    target = ["--sandbox", str(sandbox.sb.state_dir), "--state-dir", str(state), "--json"]
    first_seq = sandbox.seq()
    first = _cli("deploy", str(spec_file), *target, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    view = json.loads(first.stdout)
    assert view["runtimeStatus"] == "Completed"
    first_writes = Counter(sandbox.wire_mutations(first_seq))
    assert first_writes["grafana:CreateWorkspaceApiKey"] == 1 and first_writes["secretsmanager:CreateSecret"] == 1
    assert first_writes["secretsmanager:PutSecretValue"] == 1
    secret = client("secretsmanager").get_secret_value(
        SecretId=f"twin-control-plane/{twin}-grafana/grafana-api-key")["SecretString"]
    key = json.loads(secret)["key"]

    seq = sandbox.seq()
    second = _cli("deploy", str(spec_file), *target, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert again["runtimeStatus"] == "Completed"
    counts = again.get("summary", {}).get("counts", {})
    assert counts.get("created") == 0 and counts.get("updated") == 0 and counts.get("unchanged", 0) > 0, counts
    assert sandbox.wire_mutations(seq) == []
    # The second process did read the key, from the secret.
    assert any(r.get("operation") == "secretsmanager:GetSecretValue" for r in sandbox.requests(seq))
    for out in (first, second):
        assert key not in out.stdout and key not in out.stderr
    # Nor in the host's state (histories, logs).
    assert [p for p in state.rglob("*") if p.is_file() and key.encode() in p.read_bytes()] == []

    gone = _cli("destroy", twin, *target, env=env)
    assert gone.returncode == 0, gone.stderr[-3000:]
    with pytest.raises(ClientError) as missing:
        client("secretsmanager").get_secret_value(SecretId=f"twin-control-plane/{twin}-grafana/grafana-api-key")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_secret_scheduled_for_deletion_is_a_clear_error_and_delete_finishes_it(walker: Any) -> None:
    w = _ready(walker)
    assert w.ensure(RID).action == "created"
    stored = _secret(w)
    assert stored is not None
    client("secretsmanager").delete_secret(SecretId=_secret_name(w), RecoveryWindowInDays=7)
    gd.forget_cached_keys()
    with pytest.raises(PermanentError) as failure:
        w.ensure(RID)
    text = str(failure.value)
    assert _secret_name(w) in text and "scheduled for deletion" in text and stored["key"] not in text
    assert w.delete(RID).action == "deleted"
    assert client("secretsmanager").list_secrets(
        IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": [_secret_name(w)]}])["SecretList"] == []
