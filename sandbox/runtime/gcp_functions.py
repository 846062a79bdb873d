"""Cloud Functions (2nd gen) revisions run from their uploaded source under `functions-framework`.

Each revision is one `python -m functions_framework --target ENTRY --source main.py` process (the
runtime library Google's Python buildpack serves functions with) in a folder of its own, listening
on 127.0.0.1, with the environment Cloud Run gives a revision: the function's
`serviceConfig.environmentVariables`, `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`, `PORT`,
`FUNCTION_TARGET`, `FUNCTION_SIGNATURE_TYPE`, plus the sandbox's endpoints so the function's own
Google clients reach the sandbox (`GOOGLE_CLOUD_PROJECT`, `FIRESTORE_EMULATOR_HOST`,
`PUBSUB_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST`). Nothing of the sandbox is on its import path: the
function imports its own files and what the sandbox's Python environment has installed (the
uploaded `requirements.txt` is not installed).

A new revision starts before the old one stops, and the function's front door switches to it once
it answers, so a redeploy (an environment change restarts the function) loses no request.
Everything here runs on the GCP sandbox's event loop.

Each revision binds port 0 and the port comes from gunicorn's own "Listening at" line: a port
picked here and handed over would be free only until something else on a busy machine (another
sandbox's server, an outgoing connection's ephemeral port) took it, and then the revision would
fail to bind while the readiness probe was answered by the other process (the function's front
door then answered 503 until the deploy was retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import shutil
import signal
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger("sandbox.runtime.gcp")

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME", "TZ")
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
# gunicorn's arbiter logs where it listens at level info: "Listening at: http://127.0.0.1:PORT (PID)".
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")


class RevisionFailed(Exception):
    """The revision did not start; the message says why (build or health check, as GCF reports)."""


@dataclass(frozen=True)
class RevisionSpec:
    function: str  # projects/P/locations/L/functions/F
    service: str  # the Cloud Run service id (= function id)
    revision: str  # e.g. ingest-00002-abc
    source_zip: bytes = field(repr=False)
    entry_point: str
    signature_type: str  # "http" | "cloudevent"
    environment: tuple[tuple[str, str], ...]
    timeout_seconds: int
    sandbox_env: tuple[tuple[str, str], ...]  # the sandbox endpoints


@dataclass
class Worker:
    spec: RevisionSpec
    proc: asyncio.subprocess.Process
    url: str
    log_path: Path


class GcpFunctionRunner:
    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = root
        self.python = python
        self._workers: dict[str, Worker] = {}  # function name -> serving worker

    def url(self, function: str) -> str | None:
        worker = self._workers.get(function)
        return worker.url if worker is not None and worker.proc.returncode is None else None

    def log_path(self, function: str) -> Path | None:
        worker = self._workers.get(function)
        return worker.log_path if worker is not None else None

    async def deploy(self, spec: RevisionSpec) -> str:
        """Start `spec`; once it answers, make it the function's serving worker and stop the old
        one. RevisionFailed if it does not start."""
        folder = self.root / spec.service / spec.revision
        await asyncio.get_running_loop().run_in_executor(None, _unpack, spec.source_zip, folder)
        if not (folder / "main.py").is_file():
            raise RevisionFailed("Build failed: missing main.py in the source: a Python function's source must "
                                 "have main.py at its root.")
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(dict(spec.environment))
        env.update(dict(spec.sandbox_env))
        env.update({
            "K_SERVICE": spec.service, "K_REVISION": spec.revision, "K_CONFIGURATION": spec.service,
            "FUNCTION_TARGET": spec.entry_point, "FUNCTION_SIGNATURE_TYPE": spec.signature_type,
            "CLOUD_RUN_TIMEOUT_SECONDS": str(spec.timeout_seconds), "PYTHONUNBUFFERED": "1",
            # One worker process with a few threads: a 2-core sandbox runs many functions.
            "WORKERS": "1", "THREADS": "4",
            # The arbiter's "Listening at" line tells the port it bound (see the module docstring).
            "GUNICORN_LOG_LEVEL": "info",
        })
        log_path = folder.with_suffix(".log")
        with open(log_path, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "functions_framework", "--target", spec.entry_point, "--source", "main.py",
                "--host", "127.0.0.1", "--port", "0",
                cwd=str(folder), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )
        try:
            url = await _await_ready(proc, log_path)
        except RevisionFailed:
            await _terminate(proc)
            raise
        old = self._workers.get(spec.function)
        self._workers[spec.function] = Worker(spec, proc, url, log_path)
        if old is not None:
            await _terminate(old.proc)
        log.info("Cloud Function %s: revision %s serving on %s", spec.function, spec.revision, url)
        return url

    async def stop(self, function: str) -> None:
        worker = self._workers.pop(function, None)
        if worker is not None:
            await _terminate(worker.proc)

    async def close(self) -> None:
        for function in list(self._workers):
            await self.stop(function)


def _unpack(data: bytes, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = 0
            for member in zf.infolist():
                target = (tmp / member.filename).resolve()
                if not str(target).startswith(str(tmp.resolve())):
                    raise RevisionFailed(f"Build failed: source entry {member.filename!r} escapes the source folder")
                total += member.file_size
            if total > MAX_UNPACKED_BYTES:
                raise RevisionFailed("Build failed: the unpacked source is larger than 512 MB")
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        raise RevisionFailed(f"Build failed: the uploaded source is not a zip archive ({exc})") from exc
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)


def _listening_port(log_path: Path, pid: int) -> int | None:
    """The port this revision's gunicorn arbiter (process `pid`) says it listens on, once it has."""
    try:
        text = log_path.read_text("utf-8", "replace")
    except OSError:
        return None
    for match in LISTENING.finditer(text):
        if int(match.group(2)) == pid:
            return int(match.group(1))
    return None


async def _await_ready(proc: asyncio.subprocess.Process, log_path: Path) -> str:
    """The revision's URL once it listens and answers (`/robots.txt` is answered by the framework
    itself); RevisionFailed if it exits or does not answer in time."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    url = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                tail = " | ".join(log_path.read_text("utf-8", "replace").strip().splitlines()[-4:])
                raise RevisionFailed("Could not create or update Cloud Run service: the user-provided container "
                                     f"failed to start and listen on the port (exit code {proc.returncode}): "
                                     f"{tail or 'no output'}")
            if not url:
                port = _listening_port(log_path, proc.pid)
                url = f"http://127.0.0.1:{port}" if port else ""
            if url:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with session.get(url + "/robots.txt") as resp:
                        await resp.read()
                        return url
            await asyncio.sleep(0.1)
    raise RevisionFailed(f"Could not create or update Cloud Run service: the container did not listen within "
                         f"{START_TIMEOUT_SECONDS:.0f} s (see {log_path})")


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
