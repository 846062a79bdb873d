"""Lambda functions run from their deployed zip, in warm worker processes.

moto stores a function's code and configuration but does not run it (without Docker). The
runner reads both from moto's in-process backend (the same record `GetFunctionConfiguration`
answers from), unpacks the zip once per code hash, and keeps up to `max_workers` warm
`lambda_worker.py` processes per function, as Lambda keeps execution environments. A worker set
is replaced when the code or the configuration (handler, environment, timeout, memory) changes.

The environment is what Lambda gives a function, pointed at the sandbox: the function's own
variables, then `AWS_ENDPOINT_URL` (the sandbox's AWS proxy), dummy credentials, the region,
the `AWS_LAMBDA_*` variables, and the sandbox CA for HTTPS calls to the Azure side.
Everything here runs on the AWS proxy's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("sandbox.runtime.lambda")

WORKER_SCRIPT = Path(__file__).resolve().with_name("lambda_worker.py")
ACCOUNT_ID = "123456789012"
INIT_TIMEOUT_SECONDS = 30.0  # Lambda's init phase limit is 10 s; imports are slower on a busy test box
DEFAULT_MAX_WORKERS = 4
ASYNC_RETRY_DELAYS = (1.0, 2.0)  # Lambda retries a failed asynchronous invocation twice
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class LambdaSpec:
    """One function version as moto holds it."""

    region: str
    name: str
    arn: str
    handler: str
    runtime: str
    timeout: float
    memory: int
    environment: tuple[tuple[str, str], ...]
    code_sha256: str
    code: bytes = field(repr=False, compare=False)
    url_auth_type: str = "NONE"

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.code_sha256, self.handler, self.runtime, self.timeout, self.memory, self.environment])
        return hashlib.sha256(text.encode()).hexdigest()


def _lambda_backends() -> list[Any]:
    from moto.awslambda.models import lambda_backends
    from moto.awslambda_simple.models import lambda_simple_backends

    out: list[Any] = []
    backend_dicts: tuple[Any, ...] = (lambda_simple_backends, lambda_backends)
    for backend_dict in backend_dicts:
        # dict.values: iterating a BackendDict this way never creates empty region backends.
        for account_backends in list(dict.values(backend_dict)):
            out.extend(list(dict.values(account_backends)))
    return out


def _spec(fn: Any) -> LambdaSpec:
    url = getattr(fn, "url_config", None)
    return LambdaSpec(
        region=str(fn.region),
        name=str(fn.function_name),
        arn=str(fn.function_arn),
        handler=str(fn.handler or ""),
        runtime=str(fn.run_time or ""),
        timeout=float(fn.timeout or 3),
        memory=int(fn.memory_size or 128),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        code_sha256=str(getattr(fn, "code_sha_256", "") or ""),
        code=bytes(getattr(fn, "code_bytes", b"") or b""),
        url_auth_type=str((url.config.get("AuthType") if url is not None else None) or "NONE"),
    )


def lookup_function(region: str, name: str, qualifier: str | None = None) -> LambdaSpec | None:
    """The function `name` (a name or ARN) in `region` as moto holds it; None if moto has none."""
    from moto.awslambda.utils import get_backend

    if name.startswith("arn:"):
        parts = name.split(":")
        region = parts[3] if len(parts) > 3 else region
    try:
        fn = get_backend(ACCOUNT_ID, region).get_function(name, qualifier)
    except Exception:  # moto raises its UnknownFunctionException (and others) for missing ones
        return None
    return _spec(fn) if fn is not None else None


def lookup_function_url(url_id: str) -> LambdaSpec | None:
    """The function whose function URL moto generated with this id (its host's first label)."""
    for backend in _lambda_backends():
        for group in list(backend._lambdas._functions.values()):
            fn = group.get("latest")
            url = getattr(fn, "url_config", None)
            if url is not None and str(url.url).split("//", 1)[-1].split(".", 1)[0] == url_id:
                return _spec(fn)
    return None


@dataclass
class InvokeResult:
    payload: bytes
    error_type: str | None = None  # set when the function failed (X-Amz-Function-Error: Unhandled)
    duration_ms: float = 0.0
    request_id: str = ""
    log: str = ""  # what the function wrote during this invocation (Lambda's `LogType=Tail`)

    @property
    def ok(self) -> bool:
        return self.error_type is None


class Worker:
    """One warm execution environment (a `lambda_worker.py` process)."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.init_error: dict[str, Any] | None = None
        self.dead = False

    @classmethod
    async def spawn(cls, python: str, code_dir: Path, handler: str, env: dict[str, str], log_path: Path) -> Worker:
        with open(log_path, "ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                python, "-I", str(WORKER_SCRIPT), str(code_dir), handler,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                cwd=str(code_dir), env=env, start_new_session=True,
            )
        worker = cls(proc, log_path)
        try:
            first = await asyncio.wait_for(worker._read(), INIT_TIMEOUT_SECONDS)
        except (TimeoutError, EOFError, ValueError) as exc:
            worker.init_error = {"errorType": "Runtime.ExitError",
                                 "errorMessage": f"the runtime did not start: {type(exc).__name__} {exc}".strip()}
            await worker.close()
            return worker
        if "init_error" in first:
            worker.init_error = first["init_error"]
            await worker.close()
        return worker

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise EOFError("the runtime process exited")
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("the runtime wrote a non-object line")
        return doc

    async def call(self, event: Any, context: dict[str, Any], timeout: float) -> dict[str, Any]:
        """`{"result": ...}` or `{"error": {...}}`; raises TimeoutError (the worker is then dead)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"event": event, "context": context}) + "\n").encode())
        try:
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self._read(), timeout)
        except TimeoutError:
            await self.close()
            raise
        except (EOFError, ValueError, ConnectionError) as exc:
            await self.close()
            code = self.proc.returncode
            return {"error": {"errorType": "Runtime.ExitError",
                              "errorMessage": f"Runtime exited with error: exit status {code} ({exc})", "stackTrace": []}}

    async def close(self) -> None:
        self.dead = True
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10)


class FunctionPool:
    """The warm workers of one function configuration."""

    def __init__(self, spec: LambdaSpec, code_dir: Path, env: dict[str, str], python: str, max_workers: int,
                 log_dir: Path) -> None:
        self.spec = spec
        self.code_dir = code_dir
        self.env = env
        self.python = python
        self.max_workers = max_workers
        self.log_dir = log_dir
        self.workers: list[Worker] = []
        self.idle: list[Worker] = []
        self.retired = False
        self._cond = asyncio.Condition()
        self._spawning = 0

    async def acquire(self) -> Worker:
        async with self._cond:
            while True:
                if self.idle:
                    return self.idle.pop()
                if len(self.workers) + self._spawning < self.max_workers:
                    self._spawning += 1
                    break
                await self._cond.wait()
        try:
            worker = await Worker.spawn(self.python, self.code_dir, self.spec.handler, self.env,
                                        self.log_dir / "function.log")
        finally:
            async with self._cond:
                self._spawning -= 1
        if worker.init_error is None:
            async with self._cond:
                self.workers.append(worker)
        return worker

    async def release(self, worker: Worker) -> None:
        async with self._cond:
            if worker.dead or self.retired:
                if worker in self.workers:
                    self.workers.remove(worker)
                if not worker.dead:
                    await worker.close()
            else:
                self.idle.append(worker)
            self._cond.notify()

    async def retire(self) -> None:
        async with self._cond:
            self.retired = True
            idle, self.idle = self.idle, []
            for worker in idle:
                self.workers.remove(worker)
        for worker in idle:
            await worker.close()

    async def close(self) -> None:
        await self.retire()
        for worker in list(self.workers):
            await worker.close()


class LambdaRunner:
    def __init__(self, state_dir: Path, ca_file: str, python: str = sys.executable,
                 max_workers: int = DEFAULT_MAX_WORKERS) -> None:
        self.root = state_dir / "lambda"
        self.ca_file = ca_file
        self.python = python
        self.max_workers = max_workers
        self.endpoint_url = ""  # the AWS proxy, set once it listens
        self._pools: dict[tuple[str, str], FunctionPool] = {}
        self._pool_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Recent invocations, newest last: what ran, how, and how it ended (no payloads: they may hold secrets).
        self.invocations: deque[dict[str, Any]] = deque(maxlen=2000)

    # --- configuration -----------------------------------------------------------------------

    def environment(self, spec: LambdaSpec, code_dir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(dict(spec.environment))
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "ASIASANDBOXLAMBDA000",
            "AWS_SECRET_ACCESS_KEY": "sandbox-lambda-secret",
            "AWS_SESSION_TOKEN": "sandbox-lambda-session",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": spec.handler,
            # Never the host's own AWS profile: only the sandbox exists for this code.
            "AWS_CONFIG_FILE": str(self.root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-aws-credentials"),
            "SSL_CERT_FILE": self.ca_file,
            "REQUESTS_CA_BUNDLE": self.ca_file,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    def _code_dir(self, spec: LambdaSpec) -> Path:
        digest = hashlib.sha256(spec.code).hexdigest()[:32]
        code_dir = self.root / spec.region / spec.name / digest
        if not code_dir.is_dir():
            tmp = code_dir.with_name(f"{digest}.tmp-{uuid.uuid4().hex[:8]}")
            tmp.mkdir(parents=True)
            try:
                with zipfile.ZipFile(__import__("io").BytesIO(spec.code)) as zf:
                    for member in zf.infolist():
                        target = (tmp / member.filename).resolve()
                        if not str(target).startswith(str(tmp.resolve())):
                            raise ValueError(f"zip entry {member.filename!r} escapes the code folder")
                    zf.extractall(tmp)
                tmp.rename(code_dir)
            except FileExistsError:
                shutil.rmtree(tmp, ignore_errors=True)  # another invocation unpacked it first
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return code_dir

    async def _pool(self, spec: LambdaSpec) -> FunctionPool:
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            key = (spec.region, spec.name)
            pool = self._pools.get(key)
            if pool is not None and pool.spec.fingerprint == spec.fingerprint:
                return pool
            if pool is not None:
                await pool.retire()  # new code or configuration: fresh environments from now on
            code_dir = await asyncio.get_running_loop().run_in_executor(None, self._code_dir, spec)
            log_dir = code_dir.parent
            pool = FunctionPool(spec, code_dir, self.environment(spec, code_dir), self.python, self.max_workers,
                                log_dir)
            self._pools[key] = pool
            return pool

    # --- invoking ----------------------------------------------------------------------------

    async def invoke(self, spec: LambdaSpec, event: Any, how: str = "RequestResponse",
                     request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        started = time.perf_counter()
        try:
            pool = await self._pool(spec)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            return self._finish(spec, how, request_id, started,
                                {"error": {"errorType": "Runtime.InvalidEntrypoint",
                                           "errorMessage": f"cannot unpack the deployment package: {exc}",
                                           "stackTrace": []}})
        worker = await pool.acquire()
        if worker.init_error is not None:
            return self._finish(spec, how, request_id, started, {"error": {**worker.init_error}})
        context = {
            "function_name": spec.name,
            "function_version": "$LATEST",
            "invoked_function_arn": spec.arn,
            "memory_limit_in_mb": spec.memory,
            "aws_request_id": request_id,
            "log_group_name": f"/aws/lambda/{spec.name}",
            "log_stream_name": f"sandbox/[$LATEST]{pool.spec.fingerprint[:32]}",
            "deadline_ms": int((time.time() + spec.timeout) * 1000),
        }
        log_start = _size(worker.log_path)
        try:
            outcome = await worker.call(event, context, spec.timeout)
        except TimeoutError:
            outcome = {"error": {"errorType": "Sandbox.Timedout",
                                 "errorMessage": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} "
                                                 f"Task timed out after {spec.timeout:.2f} seconds"}}
        finally:
            await pool.release(worker)
        result = self._finish(spec, how, request_id, started, outcome)
        result.log = _log_excerpt(worker.log_path, log_start, request_id, result.duration_ms)
        return result

    def _finish(self, spec: LambdaSpec, how: str, request_id: str, started: float,
                outcome: dict[str, Any]) -> InvokeResult:
        ms = (time.perf_counter() - started) * 1000
        error = outcome.get("error")
        record = {"function": spec.name, "region": spec.region, "request_id": request_id, "how": how,
                  "ok": error is None, "ms": round(ms, 1), "at": time.time()}
        if error is not None:
            record["error"] = f"{error.get('errorType')}: {error.get('errorMessage')}"
            log.info("lambda %s (%s) failed: %s", spec.name, how, record["error"])
            payload = json.dumps({k: error[k] for k in ("errorMessage", "errorType", "stackTrace") if k in error})
            result = InvokeResult(payload.encode(), str(error.get("errorType") or "Unhandled"), ms, request_id)
        else:
            result = InvokeResult(json.dumps(outcome.get("result")).encode(), None, ms, request_id)
        self.invocations.append(record)
        return result

    def invoke_event(self, spec: LambdaSpec, event: Any, how: str = "Event") -> str:
        """Queue an asynchronous invocation (retried twice on failure, as Lambda does)."""
        request_id = str(uuid.uuid4())
        task = asyncio.get_running_loop().create_task(self._run_event(spec, event, how, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return request_id

    async def _run_event(self, spec: LambdaSpec, event: Any, how: str, request_id: str) -> None:
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS)):
            if delay:
                await asyncio.sleep(delay)
            # Each attempt runs the function as it is now configured.
            current = lookup_function(spec.region, spec.name) or spec
            result = await self.invoke(current, event, how if attempt == 0 else f"{how} (retry {attempt})",
                                       request_id)
            if result.ok:
                return

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until every queued asynchronous invocation has finished (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


LOG_TAIL_BYTES = 4096


def _log_excerpt(path: Path, start: int, request_id: str, duration_ms: float) -> str:
    """This invocation's log lines framed as Lambda frames them (START / END / REPORT). Workers of
    one function share a log file, so concurrent invocations may show each other's lines."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    return (f"START RequestId: {request_id} Version: $LATEST\n{text}END RequestId: {request_id}\n"
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\n")


def log_tail(log: str) -> str:
    """`X-Amz-Log-Result`: base64 of the last 4 KB of the invocation's log."""
    return base64.b64encode(log.encode("utf-8")[-LOG_TAIL_BYTES:]).decode("ascii")


def function_url_event(url_id: str, region: str, method: str, raw_path: str, raw_query: str,
                       headers: list[tuple[str, str]], body: bytes, source_ip: str) -> dict[str, Any]:
    """The Lambda function URL request event, payload format 2.0."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in headers:
        k = key.lower()
        if k == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[k] = f"{joined[k]},{value}" if k in joined else value
    query: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else []:
        from urllib.parse import unquote_plus

        k, _, v = part.partition("=")
        k, v = unquote_plus(k), unquote_plus(v)
        query[k] = f"{query[k]},{v}" if k in query else v
    content_type = joined.get("content-type", "")
    textual = content_type.startswith(("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")) \
        or not content_type
    try:
        text = body.decode("utf-8") if textual else None
    except UnicodeDecodeError:
        text = None
    now = time.time()
    domain = f"{url_id}.lambda-url.{region}.on.aws"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": joined.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
    return event


def function_url_response(result: InvokeResult) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a function URL answer, from the handler's result."""
    if not result.ok:
        return 502, {"Content-Type": "application/json"}, b'{"Message":"Internal Server Error"}'
    try:
        value = json.loads(result.payload)
    except ValueError:
        value = None
    if isinstance(value, dict) and "statusCode" in value:
        headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
        raw = value.get("body")
        if raw is None:
            body = b""
        elif value.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
        try:
            status = int(value["statusCode"])
        except (TypeError, ValueError):
            return 502, {"Content-Type": "application/json"}, b'{"Message":"Internal Server Error"}'
        return status, headers, body
    # Any other value: 200 with the value as JSON, as function URLs do.
    return 200, {"Content-Type": "application/json"}, result.payload
