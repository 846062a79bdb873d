"""Cloud Scheduler state and its cron runner.

Jobs with an `httpTarget` (or a `pubsubTarget`) fire on their unix-cron `schedule` in their
`timeZone` while ENABLED, and at once on `:run` (or the control endpoint's
`POST /gcp/jobs/{name}/run`, which waits for the attempt and answers its outcome). An HTTP attempt
sends the job's method, headers and body with what Cloud Scheduler adds (`User-Agent:
Google-Cloud-Scheduler`, `X-CloudScheduler: true`, `X-CloudScheduler-JobName`,
`X-CloudScheduler-ScheduleTime`, `Content-Type: application/octet-stream` by default with a body) and,
with `oidcToken`, an ID token for the service account (audience: `oidcToken.audience` or the URI).
A non-2xx answer or no answer within `attemptDeadline` fails the attempt, retried `retryCount`
times with backoff between `minBackoffDuration` and `maxBackoffDuration`. `status` and
`lastAttemptTime` record the last attempt. Occurrences missed while the sandbox was down are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import threading
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from croniter import croniter

from sandbox.gcp.common import PROJECT_ID, GoogleError, duration_seconds, identity_token, now_rfc3339

if TYPE_CHECKING:
    from sandbox.gcp.backends import GcpBackends

log = logging.getLogger("sandbox.gcp.scheduler")

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
POLL_SECONDS = 0.25
RETRY_DEFAULTS: dict[str, Any] = {"maxRetryDuration": "0s", "minBackoffDuration": "5s", "maxBackoffDuration": "3600s",
                  "maxDoublings": 5}
HTTP_TO_RPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}


class JobPaused(Exception):
    """`run_now` of a job that is not ENABLED."""


class SchedulerBackend:
    def __init__(self, b: GcpBackends) -> None:
        self.b = b
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._due: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._attempts: set[asyncio.Task[Any]] = set()
        self.fired: deque[dict[str, Any]] = deque(maxlen=1000)

    # --- jobs ---------------------------------------------------------------------------------------

    def create(self, parent: str, job: dict[str, Any]) -> dict[str, Any]:
        name = str(job.get("name") or "")
        prefix = parent + "/jobs/"
        if not parent.startswith(f"projects/{PROJECT_ID}/locations/"):
            raise GoogleError("PERMISSION_DENIED", f"parent: {parent!r} is not a location of project {PROJECT_ID}")
        if not name.startswith(prefix) or not JOB_ID.fullmatch(name[len(prefix):]):
            raise GoogleError("INVALID_ARGUMENT", f"job.name: must be {prefix}JOB_ID (letters, digits, hyphens, "
                              f"underscores), got {name!r}")
        job = self._validated(job)
        with self._lock:
            if name in self._jobs:
                raise GoogleError("ALREADY_EXISTS", f"Job {name} already exists.")
            self._jobs[name] = job
            self._schedule(name, job)
        return job

    def _validated(self, job: dict[str, Any]) -> dict[str, Any]:
        job = {**job}
        targets = [k for k in ("httpTarget", "pubsubTarget", "appEngineHttpTarget") if k in job]
        if len(targets) != 1:
            raise GoogleError("INVALID_ARGUMENT", "job: exactly one target (http_target or pubsub_target) is required")
        if targets[0] == "appEngineHttpTarget":
            raise GoogleError("INVALID_ARGUMENT", "job.app_engine_http_target: the sandbox has no App Engine")
        if "httpTarget" in job:
            target = {**job["httpTarget"]}
            uri = str(target.get("uri") or "")
            if not uri.startswith(("http://", "https://")):
                raise GoogleError("INVALID_ARGUMENT", f"job.http_target.uri: must be an http(s) URL, got {uri!r}")
            target.setdefault("httpMethod", "POST")
            if target.get("body") and target["httpMethod"] not in ("POST", "PUT", "PATCH"):
                raise GoogleError("INVALID_ARGUMENT", "job.http_target.body: only POST, PUT and PATCH have a body")
            job["httpTarget"] = target
        elif not str(job["pubsubTarget"].get("topicName") or "").startswith("projects/"):
            raise GoogleError("INVALID_ARGUMENT", "job.pubsub_target.topic_name: required (projects/*/topics/*)")
        schedule = job.get("schedule")
        if not schedule or not croniter.is_valid(str(schedule)) or len(str(schedule).split()) != 5:
            raise GoogleError("INVALID_ARGUMENT", f"job.schedule: {schedule!r} is not a valid unix-cron schedule")
        zone = str(job.get("timeZone") or "Etc/UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise GoogleError("INVALID_ARGUMENT", f"job.time_zone: unknown time zone {zone!r}") from exc
        job["timeZone"] = zone
        job.setdefault("attemptDeadline", "180s")
        job["retryConfig"] = {**RETRY_DEFAULTS, **(job.get("retryConfig") or {})}
        job.setdefault("state", "ENABLED")
        job["userUpdateTime"] = now_rfc3339()
        return job

    def _schedule(self, name: str, job: dict[str, Any]) -> None:
        """Next occurrence (under the lock)."""
        if job.get("state") != "ENABLED":
            self._due.pop(name, None)
            job.pop("scheduleTime", None)
            return
        zone = ZoneInfo(str(job["timeZone"]))
        nxt: datetime = croniter(str(job["schedule"]), datetime.now(zone)).get_next(datetime)
        self._due[name] = nxt.astimezone(UTC)
        job["scheduleTime"] = self._due[name].strftime("%Y-%m-%dT%H:%M:%SZ")

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise GoogleError("NOT_FOUND", f"Job not found: {name}.")
        return job

    def list_jobs(self, parent: str) -> list[dict[str, Any]]:
        with self._lock:
            return [j for n, j in sorted(self._jobs.items()) if n.startswith(parent + "/jobs/")]

    def update(self, name: str, merged: dict[str, Any]) -> dict[str, Any]:
        self.get(name)
        job = self._validated({**merged, "name": name})
        with self._lock:
            self._jobs[name] = job
            self._schedule(name, job)
        return job

    def set_state(self, name: str, state: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise GoogleError("NOT_FOUND", f"Job not found: {name}.")
            job["state"] = state
            job["userUpdateTime"] = now_rfc3339()
            self._schedule(name, job)
            return job

    def delete(self, name: str) -> None:
        with self._lock:
            if self._jobs.pop(name, None) is None:
                raise GoogleError("NOT_FOUND", f"Job not found: {name}.")
            self._due.pop(name, None)

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"type": "cloudscheduler.job", "name": n, "state": str(j.get("state"))}
                    for n, j in sorted(self._jobs.items())]

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._due.clear()
        self.fired.clear()

    # --- firing -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="cloud-scheduler")

    async def close(self) -> None:
        task, self._task = self._task, None
        for t in [task, *self._attempts]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        while True:
            try:
                now = datetime.now(UTC)
                with self._lock:
                    due = [(n, t) for n, t in self._due.items() if t <= now]
                    for name, _ in due:
                        self._schedule(name, self._jobs[name])
                for name, moment in due:
                    self.trigger(name, moment)
            except Exception:  # one bad job must not stop the others
                log.exception("Cloud Scheduler: tick failed")
            await asyncio.sleep(POLL_SECONDS)

    def trigger(self, name: str, moment: datetime | None = None) -> None:
        """Fire `name` in the background (its schedule, or `:run`); on the loop."""
        task = asyncio.get_running_loop().create_task(self.attempt(name, moment or datetime.now(UTC)))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    def run(self, name: str) -> dict[str, Any]:
        """`:run`: fire now, whatever the schedule (answers the job at once)."""
        job = self.get(name)
        if job.get("state") != "ENABLED":
            raise GoogleError("FAILED_PRECONDITION", f"Job {name} is {job.get('state')}; only an ENABLED job runs.")
        assert self.b.loop is not None
        self.b.loop.call_soon_threadsafe(self.trigger, name, datetime.now(UTC))
        return job

    async def run_now(self, name: str, moment: datetime | None = None) -> dict[str, Any]:
        """Fire now (as scheduled for `moment`, default now) and wait for the attempt (and its
        retries); the outcome."""
        job = self.get(name)
        if job.get("state") != "ENABLED":
            raise JobPaused(f"job {name} is {job.get('state')}; only an ENABLED job runs")
        return await self.attempt(name, moment or datetime.now(UTC))

    async def attempt(self, name: str, moment: datetime) -> dict[str, Any]:
        job = self.get(name)
        retry: dict[str, Any] = job.get("retryConfig") or RETRY_DEFAULTS
        tries = 1 + int(retry.get("retryCount") or 0)
        delay = duration_seconds(retry.get("minBackoffDuration"), 5.0)
        ceiling = duration_seconds(retry.get("maxBackoffDuration"), 3600.0)
        doublings = int(retry.get("maxDoublings") or 0)
        outcome: dict[str, Any] = {}
        for attempt in range(1, tries + 1):
            outcome = await self._send(job, moment)
            outcome["attempt"] = attempt
            with self._lock:
                current = self._jobs.get(name)
                if current is not None:
                    current["lastAttemptTime"] = now_rfc3339()
                    current["status"] = {} if outcome["ok"] else {
                        "code": HTTP_TO_RPC.get(int(outcome.get("status") or 0), 2),
                        "message": str(outcome.get("error") or f"HTTP {outcome.get('status')}")}
            self.fired.append({"job": name, **{k: v for k, v in outcome.items() if k != "body"}})
            if outcome["ok"] or attempt == tries:
                break
            await asyncio.sleep(delay)
            if attempt <= doublings:
                delay = min(ceiling, delay * 2)
        return {"job": name, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), **outcome}

    async def _send(self, job: dict[str, Any], moment: datetime) -> dict[str, Any]:
        if "pubsubTarget" in job:
            target = job["pubsubTarget"]
            try:
                ids = self.b.pubsub.publish(str(target["topicName"]), [
                    {"data": target.get("data") or "", "attributes": target.get("attributes") or {}}])
            except GoogleError as exc:
                return {"ok": False, "status": exc.http_status, "error": exc.message}
            return {"ok": True, "status": 200, "messageIds": ids}
        target = job["httpTarget"]
        uri = str(target["uri"])
        headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
        body = base64.b64decode(target.get("body") or "")
        if body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        headers.update({"User-Agent": "Google-Cloud-Scheduler", "X-CloudScheduler": "true",
                        "X-CloudScheduler-JobName": str(job["name"]).rsplit("/", 1)[-1],
                        "X-CloudScheduler-ScheduleTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")})
        oidc = target.get("oidcToken") or {}
        if oidc.get("serviceAccountEmail"):
            headers["Authorization"] = "Bearer " + identity_token(str(oidc["serviceAccountEmail"]),
                                                                  str(oidc.get("audience") or uri))
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        deadline = duration_seconds(job.get("attemptDeadline"), 180.0)
        try:
            async with self._session.request(str(target.get("httpMethod") or "POST"), uri, data=body or None,
                                             headers=headers, timeout=aiohttp.ClientTimeout(total=deadline)) as resp:
                payload = await resp.read()
                return {"ok": 200 <= resp.status < 300, "status": resp.status,
                        "body": payload[:4096].decode("utf-8", "replace")}
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return {"ok": False, "status": 504 if isinstance(exc, asyncio.TimeoutError) else 503,
                    "error": f"{type(exc).__name__}: {exc}"[:300]}
