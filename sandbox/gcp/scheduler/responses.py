"""Cloud Scheduler v1 REST handlers (`scheduler_v1.CloudSchedulerClient(transport="rest")`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.core.http import json_response
from sandbox.gcp.backends import backends
from sandbox.gcp.common import api, apply_mask, page, parse_message, read_json, update_mask


def _job_type() -> Any:
    from google.cloud.scheduler_v1 import types

    return types.Job


def _parent(request: web.Request) -> str:
    return f"projects/{request.match_info['project']}/locations/{request.match_info['location']}"


def _name(request: web.Request) -> str:
    return f"{_parent(request)}/jobs/{request.match_info['job']}"


@api("cloudscheduler:CreateJob", mutating=True)
async def create_job(request: web.Request) -> web.Response:
    job = parse_message(_job_type(), await read_json(request), "job")
    return json_response(backends(request).scheduler.create(_parent(request), job))


@api("cloudscheduler:GetJob", mutating=False)
async def get_job(request: web.Request) -> web.Response:
    return json_response(backends(request).scheduler.get(_name(request)))


@api("cloudscheduler:ListJobs", mutating=False)
async def list_jobs(request: web.Request) -> web.Response:
    chunk, token = page(backends(request).scheduler.list_jobs(_parent(request)), request)
    out: dict[str, Any] = {"jobs": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return json_response(out)


@api("cloudscheduler:UpdateJob", mutating=True)
async def update_job(request: web.Request) -> web.Response:
    scheduler = backends(request).scheduler
    name = _name(request)
    patch = parse_message(_job_type(), await read_json(request), "job")
    merged = apply_mask(scheduler.get(name), patch, update_mask(request))
    return json_response(scheduler.update(name, merged))


@api("cloudscheduler:DeleteJob", mutating=True)
async def delete_job(request: web.Request) -> web.Response:
    backends(request).scheduler.delete(_name(request))
    return json_response({})


@api("cloudscheduler:RunJob", mutating=True)
async def run_job(request: web.Request) -> web.Response:
    await read_json(request)
    return json_response(backends(request).scheduler.run(_name(request)))


@api("cloudscheduler:PauseJob", mutating=True)
async def pause_job(request: web.Request) -> web.Response:
    await read_json(request)
    return json_response(backends(request).scheduler.set_state(_name(request), "PAUSED"))


@api("cloudscheduler:ResumeJob", mutating=True)
async def resume_job(request: web.Request) -> web.Response:
    await read_json(request)
    return json_response(backends(request).scheduler.set_state(_name(request), "ENABLED"))
