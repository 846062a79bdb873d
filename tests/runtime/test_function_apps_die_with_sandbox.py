"""A SIGKILLed sandbox leaves no Function App host running (issue 12 item 8).

A child process runs a sandbox, deploys a small app to a Function App through ARM and Kudu, waits
for its host to run and prints the host's pid; the test SIGKILLs that child and the host must end
within a few seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = '''
import io, sys, time, zipfile
from pathlib import Path
sys.path.insert(0, {runtime_tests!r})
from conftest import AzureEnv
from sandbox.server import Sandbox

sb = Sandbox(Path({state!r}), profile="instant", with_blob=False, with_aws=False)
sb.start()
env = AzureEnv(sb, sb.function_apps)
env.group("tether-rg")
site = env.function_app("tether-rg", "tether-app", {{}})
package = io.BytesIO()
with zipfile.ZipFile(package, "w") as zf:
    zf.write({app!r}, "function_app.py")
    zf.writestr("host.json", '{{"version": "2.0"}}')
env.zip_deploy(site, package.getvalue())
status = sb.function_apps.wait_running("tether-app")
print("HOST", status["pid"], flush=True)
time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by init) no longer runs.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_function_app_hosts_die_with_a_sigkilled_sandbox(tmp_path: Path) -> None:
    script = SCRIPT.format(runtime_tests=str(ROOT / "tests" / "runtime"), state=str(tmp_path / "sb"),
                           app=str(ROOT / "tests" / "host" / "apps" / "settings_echo" / "function_app.py"))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    host_pid = 0
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline and not host_pid:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("HOST "):
                host_pid = int(line.split()[1])
        assert host_pid and _alive(host_pid), f"the sandbox never ran the Function App host: {seen[-5:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while _alive(host_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(host_pid), f"host pid {host_pid} outlived its SIGKILLed sandbox"
    finally:
        for pid in (proc.pid, host_pid):
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
