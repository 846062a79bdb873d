"""A host killed with SIGKILL mid-fan-out resumes on restart and completes the instance."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from host_helpers import APPS, KEY

ROOT = Path(__file__).resolve().parents[2]


def _entry() -> list[str]:
    """`python -m control_plane serve`; the serve module itself while the CLI's other commands are absent."""
    if importlib.util.find_spec("twin_cli.commands.plan") is None:
        return [sys.executable, "-m", "twin_cli.commands.serve"]
    return [sys.executable, "-m", "control_plane", "serve"]


def _serve(state_dir: Path, activity_log: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, ACTIVITY_LOG=str(activity_log), SQUARE_DELAY="0.25", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*_entry(), "--app", str(APPS / "crash"), "--state-dir",
         str(state_dir), "--port", "0", "--function-key", KEY, "--activity-concurrency", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("READY "):
            return proc, line.split()[1]
    proc.kill()
    proc.wait()
    raise AssertionError("host did not start:\n" + "".join(seen))


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_sigkill_mid_fan_out_then_restart_completes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    activity_log = tmp_path / "activities.log"
    proc, base = _serve(state_dir, activity_log)
    try:
        req = urllib.request.Request(f"{base}/runtime/webhooks/durabletask/orchestrators/CrashFanOut/crash-1?code={KEY}",
                                     data=b"12", method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
        timer = urllib.request.Request(
            f"{base}/runtime/webhooks/durabletask/orchestrators/CrashTimer/timer-1?code={KEY}", data=b"3",
            method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(timer, timeout=10) as resp:
            assert resp.status == 202
        deadline = time.monotonic() + 20
        while not activity_log.exists() or len(activity_log.read_text().split()) < 4:
            assert time.monotonic() < deadline, "activities never ran"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = activity_log.read_text().split()
    assert len(done_before) < 12, "the fan-out finished before the kill; the test proves nothing"

    proc, base = _serve(state_dir, activity_log)
    try:
        status = _wait_done(f"{base}/runtime/webhooks/durabletask/instances/crash-1?code={KEY}")
        timer_status = _wait_done(f"{base}/runtime/webhooks/durabletask/instances/timer-1?code={KEY}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    squares = [i * i for i in range(12)]
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"squares": squares, "total": sum(squares) ** 2}
    ran = [int(v) for v in activity_log.read_text().split()]
    # Every index ran at least once; those in flight at the kill may have run twice (at-least-once).
    assert set(range(12)) <= set(ran)
    # The timer created before the kill fired after the restart, not earlier than its persisted time.
    assert timer_status["runtimeStatus"] == "Completed", timer_status
    out = timer_status["output"]
    assert datetime.fromisoformat(out["woke_at"]) >= datetime.fromisoformat(out["fire_at"])


def _wait_done(url: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        code, status = _get(url)
        assert code in (200, 202), status
        if status["runtimeStatus"] not in ("Running", "Pending"):
            return status
        assert time.monotonic() < deadline, f"instance never completed after restart: {status}"
        time.sleep(0.1)
