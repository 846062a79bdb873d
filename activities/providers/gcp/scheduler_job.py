"""L3 movers' timers (kind `scheduler-job`): a Cloud Scheduler job that POSTs to the mover
function's URL on the plan's unix-cron schedule (UTC), with an OIDC ID token of the twin's service
account for that URL, the identity the private mover admits (`roles/run.invoker`). The mover takes
the job's `X-CloudScheduler-ScheduleTime` as its "now", so a retried attempt moves the same data.
A job has no labels: its description names the owner (`owner_description`). A job without it is
unowned (adopted: the update writes the description); another owner's is refused and never deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    functions,
    get_or_none,
    ignore_missing,
    marks_from_description,
    owner_description,
    project_of,
    scheduler,
)
from activities.providers.gcp.cloud_function import function_path
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import SchedulerJobConfig

TIME_ZONE = "Etc/UTC"
ATTEMPT_DEADLINE_S = 600
RETRY_COUNT = 3


def job_name(config: SchedulerJobConfig) -> str:
    return f"projects/{project_of(config)}/locations/{config.region}/jobs/{config.name}"


def mover_url(config: SchedulerJobConfig) -> str:
    """The URL of the function the job calls (it is deployed before the job: the plan's needs)."""
    name = function_path(project_of(config), config.region, config.function)
    fn = get_or_none(lambda: functions().get_function(request={"name": name}))
    if fn is None or not fn.service_config.uri:
        raise TransientError(f"scheduler job {config.name}: its function {config.function} has no URL yet")
    return str(fn.service_config.uri)


def wanted_job(call: ResourceCall, config: SchedulerJobConfig, url: str) -> dict[str, Any]:
    account = account_email(config.service_account, project_of(config))
    return {
        "name": job_name(config),
        "description": owner_description(call),
        "schedule": config.cron,
        "time_zone": TIME_ZONE,
        "attempt_deadline": {"seconds": ATTEMPT_DEADLINE_S},
        "retry_config": {"retry_count": RETRY_COUNT},
        "http_target": {"uri": url, "http_method": "POST", "headers": {"Content-Type": "application/json"},
                        "body": b"{}", "oidc_token": {"service_account_email": account, "audience": url}},
    }


def differences(job: Any, wanted: dict[str, Any]) -> list[str]:
    target, have = wanted["http_target"], job.http_target
    paths = []
    if job.schedule != wanted["schedule"]:
        paths.append("schedule")
    if job.time_zone != wanted["time_zone"]:
        paths.append("time_zone")
    if job.description != wanted["description"]:
        paths.append("description")
    if int(job.attempt_deadline.total_seconds()) != ATTEMPT_DEADLINE_S:
        paths.append("attempt_deadline")
    if job.retry_config.retry_count != RETRY_COUNT:
        paths.append("retry_config.retry_count")
    if (have.uri, have.http_method.name, have.oidc_token.service_account_email, have.oidc_token.audience,
            bytes(have.body)) != (target["uri"], target["http_method"], target["oidc_token"]["service_account_email"],
                                  target["oidc_token"]["audience"], target["body"]):
        paths.append("http_target")
    return paths


@register("gcp", "scheduler-job")
class SchedulerJob(GcpResource[SchedulerJobConfig]):
    model = SchedulerJobConfig
    label = "Cloud Scheduler job"
    labelled = False

    def owner_marks(self, call: ResourceCall, config: SchedulerJobConfig, current: Any) -> Mapping[str, str]:
        return marks_from_description(current.description)

    def describe(self, call: ResourceCall, config: SchedulerJobConfig) -> Any:
        return get_or_none(lambda: scheduler().get_job(request={"name": job_name(config)}))

    def converge(self, call: ResourceCall, config: SchedulerJobConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict
        from google.cloud import scheduler_v1
        from google.protobuf import field_mask_pb2

        job = self.found(call, config)
        wanted = wanted_job(call, config, mover_url(config))
        if job is None:
            with contextlib.suppress(Conflict):  # created by a concurrent run
                scheduler().create_job(request={"parent": job_name(config).rsplit("/jobs/", 1)[0],
                                                "job": scheduler_v1.Job(wanted)})
            return EnsureResult(action="created")
        paths = differences(job, wanted)
        if paths:
            scheduler().update_job(request={"job": scheduler_v1.Job(wanted),
                                            "update_mask": field_mask_pb2.FieldMask(paths=paths)})
            action = "updated" if action == "unchanged" else action
        if job.state.name == "PAUSED":
            scheduler().resume_job(request={"name": job_name(config)})
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action)

    def details(self, call: ResourceCall, config: SchedulerJobConfig, current: Any) -> dict[str, Any]:
        return {"schedule": current.schedule, "time_zone": current.time_zone, "state": current.state.name,
                "uri": current.http_target.uri}

    def remove(self, call: ResourceCall, config: SchedulerJobConfig, current: Any) -> bool:
        ignore_missing(lambda: scheduler().delete_job(request={"name": job_name(config)}))
        return True
