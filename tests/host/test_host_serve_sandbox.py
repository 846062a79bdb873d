"""`serve --sandbox DIR` points the app at a sandbox: the app sees TWIN_SANDBOX_DIR, as on Azure it
would see its app settings; a folder without endpoints.json is refused with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from host_helpers import APPS

ROOT = Path(__file__).resolve().parents[2]


def _serve(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "control_plane", "serve", "--app", str(APPS / "settings_echo"), "--port", "0", *extra],
        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def test_serve_with_sandbox_sets_the_sandbox_setting(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text("{}")
    proc = _serve("--sandbox", str(tmp_path))
    try:
        assert proc.stdout is not None
        base = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not base:
            line = proc.stdout.readline()
            if line.startswith("READY "):
                base = line.split()[1]
            elif not line and proc.poll() is not None:
                break
        assert base, "the host did not start"
        with urllib.request.urlopen(f"{base}/api/setting/TWIN_SANDBOX_DIR", timeout=10) as resp:
            assert resp.read().decode() == str(tmp_path.resolve())
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_refuses_a_folder_without_endpoints(tmp_path: Path) -> None:
    proc = _serve("--sandbox", str(tmp_path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "endpoints.json" in out
