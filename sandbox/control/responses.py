"""Handlers of the control endpoint. Errors are JSON `{"error": {"code", "message"}}` naming the field."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.arm.ids import PathError, ResourceId, parse
from sandbox.arm.models import arm_backend
from sandbox.core.context import FunctionHostRef
from sandbox.core.http import json_response
from sandbox.core.profiles import PROFILES

if TYPE_CHECKING:
    from sandbox.server import Sandbox


def _error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        return _error(400, "InvalidJson", f"body: not valid JSON ({exc})")
    if not isinstance(body, dict):
        return _error(400, "InvalidJson", "body: must be a JSON object")
    return body


class ControlHandlers:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.ctx = sandbox.ctx

    async def requests(self, request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        try:
            since = int(raw)
        except ValueError:
            return _error(400, "InvalidQuery", f"since: must be an integer sequence number, got {raw!r}")
        records = self.ctx.request_log.since(since)
        cloud = request.query.get("cloud")
        if cloud is not None:
            records = [r for r in records if r.cloud == cloud]
        mutating = request.query.get("mutating")
        if mutating is not None:
            if mutating not in ("true", "false"):
                return _error(400, "InvalidQuery", f"mutating: must be true or false, got {mutating!r}")
            records = [r for r in records if r.mutating == (mutating == "true")]
        return json_response([r.to_json() for r in records])

    async def resources(self, request: web.Request) -> web.Response:
        # AWS listing talks to moto over HTTP: keep it off the event loop.
        listing = await asyncio.get_running_loop().run_in_executor(None, self.sandbox.list_resources)
        return json_response(listing)

    async def operations(self, request: web.Request) -> web.Response:
        """ARM's long-running operations and how long the profile made each one (a create kept
        invisible for a while lasts until it shows): what a benchmark needs to tell the modelled
        cloud's time from the client's."""
        with arm_backend(self.ctx).lock:
            ops = list(arm_backend(self.ctx).operations.values())
        return json_response([{"kind": op.kind, "resourceId": op.resource_id, "type": op.type_key,
                               "startedAt": op.started_at, "dueAt": op.due_at, "status": op.status}
                              for op in ops])

    async def endpoints(self, request: web.Request) -> web.Response:
        return json_response(self.sandbox.endpoints)

    async def reset(self, request: web.Request) -> web.Response:
        await asyncio.get_running_loop().run_in_executor(None, self.sandbox.reset)
        return json_response({"reset": True})

    async def get_profile(self, request: web.Request) -> web.Response:
        return json_response({**asdict(self.ctx.faults.profile), "seed": self.ctx.faults.seed})

    async def set_profile(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("name")
        seed = body.get("seed")
        if not isinstance(name, str) or name not in PROFILES:
            return _error(
                400, "InvalidProfile", f"name: must be one of {', '.join(sorted(PROFILES))}, got {name!r}"
            )
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            return _error(400, "InvalidSeed", f"seed: must be an integer, got {seed!r}")
        profile = self.ctx.faults.set_profile(name, seed)
        return json_response({**asdict(profile), "seed": self.ctx.faults.seed})

    async def list_hosts(self, request: web.Request) -> web.Response:
        return json_response({site: {"base_url": h.base_url} for site, h in self.ctx.function_hosts.items()})

    async def register_host(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        site = body.get("site")
        base_url = body.get("base_url")
        master_key = body.get("master_key")
        if not isinstance(site, str) or not site:
            return _error(400, "InvalidSite", "site: a site resource id or site name is required")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            return _error(400, "InvalidBaseUrl", f"base_url: must be an http(s) URL, got {base_url!r}")
        if master_key is not None and not isinstance(master_key, str):
            return _error(400, "InvalidMasterKey", "master_key: must be a string")
        site_key = self._site_key(site)
        if site_key is None:
            return _error(404, "SiteNotFound", f"site: no Function App named {site!r} exists in the sandbox")
        self.ctx.function_hosts[site_key] = FunctionHostRef(base_url.rstrip("/"), master_key)
        return json_response({"site": site_key, "base_url": base_url.rstrip("/")}, 201)

    def _site_key(self, site: str) -> str | None:
        if site.startswith("/"):
            try:
                rid = parse(site)
            except PathError:
                return None
            if not isinstance(rid, ResourceId) or rid.type_key != "microsoft.web/sites":
                return None
            return rid.key
        found = arm_backend(self.ctx).find_site_by_name(site)
        return found[0].rid.key if found else None

    async def run_rule(self, request: web.Request) -> web.Response:
        """Run an EventBridge rule's targets now, as its schedule would; answers each outcome.
        Body (optional): `{"time": "2026-01-01T00:00:00Z"}`, the scheduled moment the event carries."""
        from sandbox.aws.schedules import RuleDisabled

        aws = self.sandbox.aws
        if aws is None:
            return _error(409, "AwsNotRunning", "the sandbox runs without its AWS side")
        moment = await _scheduled_moment(request)
        if isinstance(moment, web.Response):
            return moment
        name = request.match_info["name"]
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(None, aws.run_rule, name, moment)
        except KeyError:
            return _error(404, "ResourceNotFoundException", f"name: no EventBridge rule {name!r} exists")
        except RuleDisabled as exc:
            return _error(409, "RuleDisabled", f"name: {exc}")
        return json_response(outcome)

    async def run_job(self, request: web.Request) -> web.Response:
        """Run a Cloud Scheduler job now, as its schedule would, and answer the attempt's outcome.
        `name` is the job id or its full name (`projects/P/locations/L/jobs/ID`). Body (optional):
        `{"time": "2026-01-01T00:00:00Z"}`, the scheduled moment (`X-CloudScheduler-ScheduleTime`)."""
        from sandbox.gcp.scheduler.models import JobPaused

        gcp = self.sandbox.gcp
        if gcp is None:
            return _error(409, "GcpNotRunning", "the sandbox runs without its Google Cloud side")
        moment = await _scheduled_moment(request)
        if isinstance(moment, web.Response):
            return moment
        name = request.match_info["name"]
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(None, gcp.run_job, name, 900.0, moment)
        except KeyError:
            return _error(404, "NOT_FOUND", f"name: no Cloud Scheduler job {name!r} exists")
        except JobPaused as exc:
            return _error(409, "FAILED_PRECONDITION", f"name: {exc}")
        return json_response(outcome)


async def _scheduled_moment(request: web.Request) -> datetime | None | web.Response:
    """The optional `time` of a run-now body (the moment a schedule fired for), as UTC."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    raw = body.get("time")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return _error(400, "InvalidTime", f"time: expected an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {raw!r}")
    return moment.astimezone(UTC)
