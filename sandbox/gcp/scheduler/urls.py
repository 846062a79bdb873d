"""Routes of Cloud Scheduler v1 on the GCP REST endpoint."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.scheduler import responses as r


def add_routes(app: web.Application) -> None:
    jobs = "/v1/projects/{project}/locations/{location}/jobs"
    job = jobs + "/{job:[^/:]+}"
    app.router.add_post(jobs, r.create_job)
    app.router.add_get(jobs, r.list_jobs)
    app.router.add_get(job, r.get_job)
    app.router.add_patch(job, r.update_job)
    app.router.add_delete(job, r.delete_job)
    app.router.add_post(job + ":run", r.run_job)
    app.router.add_post(job + ":pause", r.pause_job)
    app.router.add_post(job + ":resume", r.resume_job)
