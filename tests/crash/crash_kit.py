"""A control plane host in its own process (`python -m control_plane serve --sandbox`) against an
in-process sandbox, and a kill switch on the sandbox's request log: when a call of an armed kind
has been answered by the cloud (and before the answer reaches the host), the host is SIGKILLed.
The host restarts on the same state folder and resumes the operation; the test then compares the
cloud's inventory with the plan."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.core.requestlog import RequestRecord

ROOT = Path(__file__).resolve().parents[2]
KEY = "crash-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Kind:
    """A kind of mutating call: its name, and how to tell a request-log record of it."""

    name: str
    matches: Callable[[RequestRecord], bool]


def aws(operation: str) -> Kind:
    return Kind(operation, lambda r: r.operation == operation)


def azure(name: str, method: str, path: str) -> Kind:
    """An Azure call by method and a regular expression searched in its URL path (no query)."""
    pattern = re.compile(path, re.IGNORECASE)
    return Kind(name, lambda r: r.cloud != "aws" and r.method == method
                and pattern.search(r.url.split("?", 1)[0]) is not None)


@dataclass
class KillSwitch:
    """Kills the host right after the first successful call of each armed kind (once per kind)."""

    armed: list[Kind]
    fired: list[str] = field(default_factory=list)
    pid: int | None = None
    active: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, log: Any) -> None:
        original = log.record

        def record(*args: Any, **kwargs: Any) -> RequestRecord:
            rec: RequestRecord = original(*args, **kwargs)
            if rec.mutating and rec.status < 400:
                self._observe(rec)
            return rec

        log.record = record  # the sandbox's own log, instrumented (answers still go out)

    def _observe(self, rec: RequestRecord) -> None:
        with self._lock:
            if not self.active:
                return
            for kind in self.armed:
                if kind.matches(rec):
                    self.armed.remove(kind)
                    self.fired.append(kind.name)
                    if self.pid is not None:
                        # Before the answer is written: the cloud did it, the host never hears of it.
                        os.kill(self.pid, signal.SIGKILL)
                        self.pid = None
                    # else: a call the host sent before the last kill, answered after it: the same
                    # window (done in the cloud, unknown to the host), so that kind is covered too.
                    return


class Host:
    """`python -m control_plane serve --sandbox DIR` on a fixed port and state folder."""

    def __init__(self, sandbox_dir: Path, state_dir: Path, log_path: Path) -> None:
        self.sandbox_dir, self.state_dir, self.log_path = sandbox_dir, state_dir, log_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, switch: KillSwitch | None = None, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        # Transient failures after a restart (a Kudu deployment still running, ...) retried soon.
        env["TWIN_ENGINE_OPTIONS"] = json.dumps({"retry_first_seconds": 0.2, "retry_max_seconds": 2.0})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--sandbox", str(self.sandbox_dir), "--no-watch",
             "--state-dir", str(self.state_dir), "--port", str(self.port), "--function-key", KEY],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab"))
        self.starts += 1
        if switch is not None:
            # Armed at once: a resumed operation calls the clouds while the host is still starting.
            switch.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            status, _ = self.get("runtime/webhooks/durabletask/instances/?top=1")
            if status == 200:
                break
            if self.proc.poll() is not None:
                assert switch is not None and switch.pid is None, self.log_path.read_text()[-3000:]
                return  # killed by the switch while starting: the caller starts it again
            assert time.monotonic() < deadline, "the host did not start"
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(f"{self.base}/{path}{sep}code={KEY}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        except OSError:
            return 0, None  # the host is down (killed, or not up yet)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def run(self, instance: str, switch: KillSwitch, timeout: float) -> dict[str, Any]:
        """Follow `instance` to its end, restarting the host each time the switch kills it."""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"{instance} did not finish; kills: {switch.fired}"
            if not self.alive():
                assert self.proc is not None
                self.proc.wait(timeout=10)
                self.start(switch)
                continue
            status, view = self.get(f"api/deployments/{instance}")
            if status == 200 and view["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                return dict(view)
            time.sleep(0.2)
