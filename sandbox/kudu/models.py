"""Kudu deployments of a site: store the zip, check it, index its functions, report status.

Status follows Kudu's `DeployStatus` (1 Building, 3 Failed, 4 Success). A deployment is seen
Building at least once by a status poll and finishes when the profile's deploy time has passed,
so clients exercise their polling loop even on the instant profile. One nobody polls finishes by
a timer on the server's loop (at its due time, and at least `UNOBSERVED_GRACE_SECONDS` after it
was received), as a real deployment runs on whether or not anyone watches.

Functions are found as the platform finds them: by reading the package's source where that
suffices (`sandbox.kudu.indexer`), else by importing the package in a process of its own that
sees nothing outside it (`sandbox.runtime.isolated index`; the control plane's own package
registers its blueprints in loops the static reading cannot follow). That runs in a thread: the
deployment stays Building until it is done.

When a deployment ends, the hook object registered for `Microsoft.Web/sites` (if it has an
`on_deployed(site_key)` method, e.g. the local Function-app runtime) is told.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.arm.models import ArmBackend, Deployment, FunctionInfo, Resource, SiteState, notify_site_listener
from sandbox.core.context import SandboxContext
from sandbox.kudu.indexer import IndexingError, NotStaticallyIndexable, index_zip

STATUS_TEXT = {1: "Building", 3: "Failed", 4: "Success"}
STATIC_INDEXING_FAILED = "Function indexing needs an import: "  # never shown: indexed by import instead
UNOBSERVED_GRACE_SECONDS = 1.0
REQUIRED_ROOT_FILES = ("function_app.py", "host.json")
IMPORT_INDEX_TIMEOUT_SECONDS = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("sandbox.kudu")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class KuduBackend:
    def __init__(self, ctx: SandboxContext, arm: ArmBackend) -> None:
        self.ctx = ctx
        self.arm = arm

    def zip_dir(self, site_name: str) -> Path:
        d = self.ctx.state_dir / "kudu" / site_name.lower()
        d.mkdir(parents=True, exist_ok=True)
        return d

    def running(self, state: SiteState) -> Deployment | None:
        for dep in state.deployments:
            self.advance(state, dep, observing=False)
            if not dep.complete:
                return dep
        return None

    def start(self, site: Resource, state: SiteState, data: bytes, kind: str, author: str) -> Deployment:
        dep_id = uuid.uuid4().hex
        path = self.zip_dir(site.rid.name) / f"{dep_id}.zip"
        path.write_bytes(data)
        now = time.time()
        dep = Deployment(
            id=dep_id,
            site_key=site.rid.key,
            kind=kind,
            received_at=now,
            due_at=now + self.ctx.faults.provisioning_seconds("kudu/deployment"),
            zip_path=str(path),
            author=author,
        )
        dep.log.append(
            self._log_line(
                f"Received {len(data)} bytes ({kind}); sha256 {hashlib.sha256(data).hexdigest()[:16]}"
            )
        )
        # Checked now, reported when the deployment completes: Kudu reads the package up front.
        dep.failure = self._check(dep)
        if dep.failure is not None and dep.failure.startswith(STATIC_INDEXING_FAILED):
            dep.failure, dep.indexing = None, True
            threading.Thread(target=self._index_by_import, args=(state, dep), name="kudu-index", daemon=True).start()
        if dep.failure is None and self.ctx.faults.fail_once(
            f"kudu:{site.rid.key}:{hashlib.sha256(data).hexdigest()}"
        ):
            dep.failure = "Deployment failed: a transient platform error (injected once by the sandbox's fault profile); redeploy."
        with self.arm.lock:
            state.deployments.append(dep)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            wait = max(dep.due_at - now, UNOBSERVED_GRACE_SECONDS)
            loop.call_later(wait, self.advance, state, dep, False)
        return dep

    def _check(self, dep: Deployment) -> str | None:
        try:
            with zipfile.ZipFile(Path(dep.zip_path)) as zf:
                names = {n.replace("\\", "/") for n in zf.namelist()}
                missing = [f for f in REQUIRED_ROOT_FILES if f not in names]
                if missing:
                    nested = sorted(n for n in names if n.endswith(f"/{missing[0]}"))
                    hint = (
                        f" (found {nested[0]}: zip the folder's contents, not the folder)" if nested else ""
                    )
                    return f"Package is missing {', '.join(missing)} at the zip root{hint}."
                try:
                    json.loads(zf.read("host.json").decode("utf-8-sig"))
                except ValueError as exc:
                    return f"host.json is not valid JSON: {exc}"
                try:
                    dep.functions = index_zip(zf)
                except NotStaticallyIndexable as exc:
                    return f"{STATIC_INDEXING_FAILED}{exc}"
                except IndexingError as exc:
                    return f"Function indexing failed: {exc}"
        except zipfile.BadZipFile:
            return "The uploaded package is not a valid zip file."
        return None

    def _index_by_import(self, state: SiteState, dep: Deployment) -> None:
        """Find the package's functions by importing it, isolated (thread)."""
        app_dir = Path(tempfile.mkdtemp(prefix="kudu-index-"))
        try:
            with zipfile.ZipFile(dep.zip_path) as zf:
                zf.extractall(app_dir)
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
            env["PYTHONPATH"] = str(REPO_ROOT)
            done = subprocess.run([sys.executable, "-m", "sandbox.runtime.isolated", "index", str(app_dir)],
                                  cwd=str(app_dir), env=env, capture_output=True, text=True,
                                  timeout=IMPORT_INDEX_TIMEOUT_SECONDS)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            answer: dict[str, Any] = (json.loads(lines[-1]) if lines
                                      else {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]})
            if "functions" in answer:
                dep.functions = [FunctionInfo(name=f["name"], trigger=f["trigger"], param=f["param"],
                                              route=f.get("route")) for f in answer["functions"]]
            else:
                dep.failure = f"Function indexing failed: {answer.get('error')}"
        except (OSError, ValueError, zipfile.BadZipFile, subprocess.TimeoutExpired) as exc:
            dep.failure = f"Function indexing failed: {exc}"
        finally:
            shutil.rmtree(app_dir, ignore_errors=True)
            dep.indexing = False
        log.info("deployment %s indexed by import: %s", dep.id, dep.failure or f"{len(dep.functions)} functions")
        self.advance(state, dep, observing=False)

    def advance(self, state: SiteState, dep: Deployment, observing: bool) -> None:
        """Move `dep` on in time; a status poll (`observing`) always sees Building once first."""
        if dep.complete or dep.indexing:
            return
        if observing:
            dep.polled += 1
        now = time.time()
        if now < dep.due_at or (observing and dep.polled < 2):
            return
        with self.arm.lock:
            if dep.complete:
                return
            dep.end_at = now
            if dep.failure is not None:
                dep.status = 3
                dep.log.append(self._log_line(dep.failure, "Error"))
            else:
                dep.status = 4
                state.deployed_functions = list(dep.functions)
                names = ", ".join(f.name for f in dep.functions) or "none"
                dep.log.append(self._log_line(f"Deployment successful. Functions found: {names}."))
        notify_site_listener(self.ctx, "on_deployed", dep.site_key)

    def _log_line(self, message: str, kind: str = "Message") -> dict[str, Any]:
        return {
            "log_time": _iso(time.time()),
            "id": uuid.uuid4().hex,
            "message": message,
            "type": kind,
            "details_url": None,
        }

    def status_body(self, base: str, dep: Deployment, state: SiteState) -> dict[str, Any]:
        last_success_dep = next((d for d in reversed(state.deployments) if d.status == 4), None)
        last_success = last_success_dep.end_at if last_success_dep is not None else None
        return {
            "id": dep.id,
            "status": dep.status,
            "status_text": STATUS_TEXT.get(dep.status, ""),
            "author_email": "N/A",
            "author": dep.author,
            "deployer": dep.kind,
            "message": f"Created via a push deployment ({dep.kind})",
            "progress": "",
            "received_time": _iso(dep.received_at),
            "start_time": _iso(dep.received_at),
            "end_time": _iso(dep.end_at),
            "last_success_end_time": _iso(last_success),
            "complete": dep.complete,
            "active": last_success_dep is dep,
            "is_temp": False,
            "is_readonly": True,
            "url": f"{base}/api/deployments/{dep.id}",
            "log_url": f"{base}/api/deployments/{dep.id}/log",
            "site_name": base.rsplit("/", 1)[-1],
        }
