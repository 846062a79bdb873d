"""What each cloud's part of the planner provides (`aws.py`, `azure.py`, `gcp.py`): how it hosts a
payload function, which resources each layer is made of there, and how its own functions reach
its stores. The layer walk (`builder.py`) decides what a twin needs; these decide how one cloud
realises it, so "what does L2 on AWS plan" is read in `aws.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.contracts import Function, Output, Setting
from shared.plan.drafts import Drafts, Hosted
from shared.resources import UserCodeRef

StorePairs = Sequence[tuple[str, str]]
"""(output, setting) pairs a function of the same cloud needs to reach a store (or the processors:
on GCP one keyed pair per device)."""


class CloudPlanner:
    """One cloud's resources. A layer a cloud cannot host raises: the spec checks keep such
    placements from reaching the planner."""

    provider = ""
    calls_by_url = False
    """Functions on this cloud call each other by URL (so the callee yields its URL)."""
    checker_sends_feedback = False
    """With L1 on this cloud too, the event checker sends feedback itself (no L2 `event-feedback`)."""

    def __init__(self, drafts: Drafts) -> None:
        self.d = drafts

    def unsupported(self, what: str) -> RuntimeError:
        return RuntimeError(f"{self.provider} cannot host {what}")

    # -- hosting a payload function ------------------------------------------------------------

    def function(self, hosted: Hosted) -> str:
        """Plan one payload function; returns the id of the resource that hosts it."""
        raise self.unsupported("functions")

    def processor_access(self) -> StorePairs:
        """What a function needs to call the L2 processor on this cloud (AWS invokes it by name)."""
        return ()

    def store_settings(self, tier: str) -> StorePairs:
        """What a function needs to reach this cloud's `hot`, `cold` or `archive` store."""
        raise self.unsupported(f"{tier} storage")

    # -- layers --------------------------------------------------------------------------------

    def setup(self) -> None:
        raise self.unsupported("a twin")

    def layer_1(self, target: Function) -> None:
        """Device ingestion, dispatching each reading to `target` (processor or connector)."""
        raise self.unsupported("L1")

    def processors(self) -> None:
        """L2: the processing of every device's readings."""
        raise self.unsupported("L2")

    def workflow(self) -> tuple[Output, Setting]:
        """L2: the notification workflow the event checker starts; the output and setting to wire."""
        raise self.unsupported("a notification workflow")

    def feedback_channel(self) -> tuple[Output, Setting]:
        """L2: how `event-feedback` reaches devices through this cloud's L1."""
        raise self.unsupported("event feedback")

    def event_action(self, user_function: str, path_to_code: str | None, spec_path: str,
                     code: UserCodeRef | None) -> None:
        """L2: a user's event action function (`autoDeploy`) running `code` (None: the spec came
        without it, which `Plan.code_problems` reports)."""
        raise self.unsupported("event actions")

    def hot_store(self) -> None:
        raise self.unsupported("hot storage")

    def cold_store(self) -> None:
        raise self.unsupported("cold storage")

    def archive_store(self) -> None:
        raise self.unsupported("archive storage")

    def mover(self, layer: str, function: Function, schedule: MoverSchedule) -> str:
        """A storage mover on its schedule; returns the id of the resource that hosts it."""
        raise self.unsupported("storage movers")

    def layer_4(self) -> None:
        raise self.unsupported("L4")

    def layer_5(self) -> str:
        """Grafana and its hot-reader datasource; returns the datasource's resource id."""
        raise self.unsupported("L5")


@dataclass(frozen=True)
class MoverSchedule:
    """When a mover runs, in each cloud's schedule syntax."""

    azure_ncrontab: str
    """Azure Functions timer trigger: `{second} {minute} {hour} {day} {month} {day-of-week}`."""
    aws_cron: str
    """EventBridge: `cron(minutes hours day-of-month month day-of-week year)`."""
    gcp_cron: str
    """Cloud Scheduler: unix cron."""
