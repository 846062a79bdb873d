"""Function Apps deployed through Kudu run from their package, each in its own local host process.

`FunctionAppRuntime(ctx)` keeps, for every site whose latest successful Kudu deployment is
known, one local host process running that package and nothing else (`sandbox.runtime.isolated`:
the app's own modules come from the package alone; it dies with the sandbox even when the
sandbox is SIGKILLed) with the site's app
settings as its environment (plus what App Service adds: `WEBSITE_HOSTNAME`, the managed-identity
endpoint, and here the sandbox CA). The host is registered in `ctx.function_hosts`, so the site's
`defaultHostName` URL (`/sites/<name>/...`, served by `sandbox.kudu.proxy`) and Event Grid reach it.

Level-triggered: a reconciler compares what should run (deployment id, settings, key, identity)
with what runs, and restarts a host when any of it changed, as App Service restarts a site on a
new deployment or a settings change; it stops the host when the site is deleted. The hooks
(`on_deployed`, `on_settings_changed`, `on_site_deleted`) only wake the reconciler early.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.arm.models import SITE_TYPE, arm_backend
from sandbox.core.context import FunctionHostRef, SandboxContext
from sandbox.runtime.identity import TOKEN_PATH, IdentityEndpoint
from shared.contracts import ControlPlaneSetting

log = logging.getLogger("sandbox.runtime")

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_HOOK_TYPE = "Microsoft.Web/sites"
READY_PREFIX = "READY "
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
RECONCILE_INTERVAL_SECONDS = 0.5
# A host that exits on its own is started again (App Service restarts a crashed worker), at most
# this often, so an app that dies at once does not spin.
CRASH_RESTART_SECONDS = 5.0
# Environment a site process inherits from the sandbox's own (everything else comes from ARM).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME", "TZ")


@dataclass(frozen=True)
class Desired:
    site_key: str
    site_name: str
    deployment_id: str
    zip_path: str
    settings: tuple[tuple[str, str], ...]
    master_key: str
    host_name: str
    identity: str  # JSON of the site's identity block: a change re-issues tokens for new principals
    function_keys: tuple[str, ...] = ()  # the host's `default` key and per-function keys (ARM listkeys)

    @property
    def fingerprint(self) -> str:
        text = json.dumps(
            [self.deployment_id, self.settings, self.master_key, self.host_name, self.identity,
             self.function_keys], sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class SiteProcess:
    desired: Desired
    proc: subprocess.Popen[bytes] | None = None
    base_url: str = ""
    identity_secret: str = ""
    state: str = "starting"  # starting | running | failed | stopped
    error: str = ""
    log_path: Path | None = None
    started_at: float = field(default_factory=time.time)


class FunctionAppRuntime:
    """Start with `.start()`, stop with `.stop()` (stops every site process it started)."""

    def __init__(self, ctx: SandboxContext, python: str = sys.executable) -> None:
        self.ctx = ctx
        self.python = python
        self.root = ctx.state_dir / "functionapps"
        self.identity = IdentityEndpoint(self._site_body, ctx.tenant_id)
        self._identity_server: Any = None
        self.identity_url = ""
        self._lock = threading.RLock()
        self._sites: dict[str, SiteProcess] = {}
        self._history: dict[str, list[int]] = {}  # site key -> pids started, in order
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        from sandbox.aws.proxy import ThreadedAppServer

        self.root.mkdir(parents=True, exist_ok=True)
        server = ThreadedAppServer(self.identity.create_app(), "sandbox-identity")
        port = server.start()
        self._identity_server = server
        self.identity_url = f"http://127.0.0.1:{port}{TOKEN_PATH}"
        self._stopping.clear()
        # ARM and Kudu tell the `Microsoft.Web/sites` hook object about site events
        # (`sandbox.arm.models.notify_site_listener`): this runtime is that object.
        self.ctx.register_hooks(SITE_HOOK_TYPE, self)
        self._thread = threading.Thread(target=self._run, name="functionapp-runtime", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reconciler, every site process, and the identity endpoint."""
        self._stopping.set()
        self._wake.set()
        if self.ctx.hooks_for(SITE_HOOK_TYPE) is self:
            self.ctx._hooks.pop(SITE_HOOK_TYPE.lower(), None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=START_TIMEOUT_SECONDS + STOP_TIMEOUT_SECONDS)
        with self._lock:
            keys = list(self._sites)
        for key in keys:
            self._stop_site(key)
        server, self._identity_server = self._identity_server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> FunctionAppRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- hooks (called by Kudu / ARM; they only make the reconciler look now) -------------------
    # They run inside ARM's request handling (some under its lock): never block here.

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        self._wake.set()  # identity or state may have changed

    def on_delete(self, resource_id: str) -> None:
        self._wake.set()

    def on_deployed(self, site_key: str) -> None:
        self._wake.set()

    def on_settings_changed(self, site_key: str) -> None:
        self._wake.set()

    def on_site_deleted(self, site_key: str) -> None:
        self._wake.set()

    # --- queries --------------------------------------------------------------------------------

    def status(self, site: str) -> dict[str, Any] | None:
        """State of a site's host by site name or resource id; None if it never ran."""
        with self._lock:
            sp = self._find(site)
            if sp is None:
                return None
            return {
                "site": sp.desired.site_name,
                "state": sp.state,
                "base_url": sp.base_url,
                "pid": sp.proc.pid if sp.proc is not None else None,
                "deployment_id": sp.desired.deployment_id,
                "error": sp.error,
                "log": str(sp.log_path) if sp.log_path else "",
                "pids": list(self._history.get(sp.desired.site_key, [])),
            }

    def wait_running(self, site: str, timeout: float = START_TIMEOUT_SECONDS, after_pid: int | None = None) -> dict[str, Any]:
        """Block until the site's host runs (a different process than `after_pid`, if given)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            self._wake.set()
            last = self.status(site)
            if last is not None and last["state"] == "running" and last["pid"] != after_pid:
                return last
            if last is not None and last["state"] == "failed" and last["pid"] != after_pid:
                raise RuntimeError(f"the Function host of {site} failed to start: {last['error']}")
            time.sleep(0.05)
        raise TimeoutError(f"the Function host of {site} did not start within {timeout:.0f} s (last: {last})")

    def _find(self, site: str) -> SiteProcess | None:
        key = site.lower()
        if key in self._sites:
            return self._sites[key]
        return next((sp for sp in self._sites.values() if sp.desired.site_name.lower() == key), None)

    # --- reconciling ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(RECONCILE_INTERVAL_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.reconcile()
            except Exception:  # the reconciler must keep running; the next pass retries
                log.exception("Function App reconcile failed")

    def reconcile(self) -> None:
        desired = self._desired()
        with self._lock:
            current = dict(self._sites)
        for key, sp in current.items():
            want = desired.get(key)
            crashed = (sp.state == "running" and sp.proc is not None and sp.proc.poll() is not None
                       and time.time() - sp.started_at >= CRASH_RESTART_SECONDS)
            if crashed:
                log.warning("Function App %s: host pid %s exited (code %s); restarting it",
                            sp.desired.site_name, sp.proc.pid if sp.proc else None,
                            sp.proc.returncode if sp.proc else None)
            if want is None or want.fingerprint != sp.desired.fingerprint or crashed:
                self._stop_site(key)
        for key, want in desired.items():
            if self._stopping.is_set():
                return
            with self._lock:
                running = key in self._sites
            if not running:
                self._start_site(want)

    def _desired(self) -> dict[str, Desired]:
        arm = arm_backend(self.ctx)
        out: dict[str, Desired] = {}
        with arm.lock:
            for key, res in arm.resources.items():
                if res.rid.type_key != SITE_TYPE:
                    continue
                state = arm.sites.get(key)
                if state is None:
                    continue
                props = res.body.get("properties") or {}
                if str(props.get("state", "Running")).lower() == "stopped":
                    continue
                dep = next((d for d in reversed(state.deployments) if d.status == 4), None)
                if dep is None:
                    continue
                out[key] = Desired(
                    site_key=key,
                    site_name=res.rid.name,
                    deployment_id=dep.id,
                    zip_path=dep.zip_path,
                    settings=tuple(sorted(state.app_settings.items())),
                    master_key=state.master_key,
                    host_name=str(props.get("defaultHostName") or ""),
                    identity=json.dumps(res.body.get("identity"), sort_keys=True),
                    function_keys=(state.default_function_key, *sorted(state.function_keys.values())),
                )
        return out

    def _site_body(self, site_key: str) -> dict[str, Any] | None:
        arm = arm_backend(self.ctx)
        res = arm.get(site_key)
        return res.body if res is not None else None

    # --- one site ---------------------------------------------------------------------------------

    def _app_dir(self, want: Desired) -> Path:
        """The package unpacked once per deployment (as run-from-package mounts it read-only)."""
        app_dir = self.root / want.site_name.lower() / "packages" / want.deployment_id
        if not (app_dir / "function_app.py").is_file():
            tmp = app_dir.with_name(app_dir.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with zipfile.ZipFile(want.zip_path) as zf:
                for member in zf.infolist():
                    target = (tmp / member.filename).resolve()
                    if not str(target).startswith(str(tmp.resolve())):
                        raise ValueError(f"{want.zip_path}: entry {member.filename!r} escapes the package folder")
                zf.extractall(tmp)
            shutil.rmtree(app_dir, ignore_errors=True)
            tmp.rename(app_dir)
        return app_dir

    def _environ(self, want: Desired, secret: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(dict(want.settings))
        ca = str(self.ctx.state_dir / "ca.pem")
        env.update(
            {
                "WEBSITE_HOSTNAME": want.host_name,
                "WEBSITE_SITE_NAME": want.site_name,
                "WEBSITE_INSTANCE_ID": hashlib.sha256(want.fingerprint.encode()).hexdigest(),
                "IDENTITY_ENDPOINT": self.identity_url,
                "IDENTITY_HEADER": secret,
                "REQUESTS_CA_BUNDLE": ca,
                "SSL_CERT_FILE": ca,
                # The host's key for FUNCTION-level routes and webhooks (`serve` reads it when no
                # --function-key is given): in the environment, not argv, so `ps` never shows it.
                ControlPlaneSetting.FUNCTIONS_HOST_KEY: want.master_key,
                # Function keys open FUNCTION-level routes too, as on Azure.
                ControlPlaneSetting.FUNCTIONS_FUNCTION_KEYS: ",".join(want.function_keys),
                "PYTHONPATH": str(REPO_ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _start_site(self, want: Desired) -> None:
        sp = SiteProcess(desired=want)
        with self._lock:
            self._sites[want.site_key] = sp
        site_dir = self.root / want.site_name.lower()
        try:
            app_dir = self._app_dir(want)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            sp.state, sp.error = "failed", f"cannot unpack the deployed package: {exc}"
            log.warning("Function App %s: %s", want.site_name, sp.error)
            return
        sp.identity_secret = self.identity.issue_secret(want.site_key)
        sp.log_path = site_dir / f"host-{int(time.time() * 1000)}.log"
        with open(sp.log_path, "wb") as out:
            sp.proc = subprocess.Popen(
                [
                    # The package alone, as the platform runs it (`isolated`: first-party modules
                    # come from the package or nowhere); it dies with this process, even when
                    # this one is SIGKILLed (it watches its stdin, as `sandbox.tether` does).
                    self.python, "-m", "sandbox.runtime.isolated", "serve", str(app_dir),
                    "--port", "0",
                    "--state-dir", str(site_dir / "host-state"),
                ],
                cwd=str(app_dir),
                env=self._environ(want, sp.identity_secret),
                stdin=subprocess.PIPE,  # never written; its end-of-file tells the host this process is gone
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it stops its children
            )
        with self._lock:
            self._history.setdefault(want.site_key, []).append(sp.proc.pid)
        log.info("Function App %s: starting host pid %s (deployment %s)", want.site_name, sp.proc.pid, want.deployment_id)
        base_url, error = self._await_ready(sp)
        if base_url is None:
            sp.state, sp.error = "failed", error
            log.warning("Function App %s: host did not start: %s", want.site_name, error)
            self._terminate(sp)
            return
        sp.base_url, sp.state = base_url, "running"
        self.ctx.function_hosts[want.site_key] = FunctionHostRef(base_url, want.master_key)
        log.info("Function App %s: host pid %s serving on %s", want.site_name, sp.proc.pid, base_url)

    def _await_ready(self, sp: SiteProcess) -> tuple[str | None, str]:
        assert sp.proc is not None and sp.log_path is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            text = sp.log_path.read_text("utf-8", "replace")
            for line in text.splitlines():
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX):].strip(), ""
            if sp.proc.poll() is not None:
                tail = " | ".join(line for line in text.strip().splitlines()[-3:])
                return None, f"the host exited with code {sp.proc.returncode}: {tail or '(no output)'}"
            if self._stopping.is_set():
                return None, "the sandbox is stopping"
            time.sleep(0.05)
        return None, f"no READY line within {START_TIMEOUT_SECONDS:.0f} s (see {sp.log_path})"

    def _stop_site(self, site_key: str) -> None:
        with self._lock:
            sp = self._sites.pop(site_key, None)
        if sp is None:
            return
        current = self.ctx.function_hosts.get(site_key)
        if current is not None and current.base_url == sp.base_url:
            self.ctx.function_hosts.pop(site_key, None)
        self._terminate(sp)
        sp.state = "stopped"
        log.info("Function App %s: host stopped", sp.desired.site_name)

    def _terminate(self, sp: SiteProcess) -> None:
        if sp.identity_secret:
            self.identity.revoke_secret(sp.identity_secret)
        proc = sp.proc
        try:
            self._stop_process(proc)
        finally:
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()

    @staticmethod
    def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            proc.wait(STOP_TIMEOUT_SECONDS)
