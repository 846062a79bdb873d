"""What the GCP provider tests share: the sandbox handle (request log, Google clients on its
endpoints) and a walker that drives a plan's GCP resources through `ensure`/`poll`/`delete` the
way the engine does (outputs recorded, wired settings passed to consumers).

Mutating calls are counted from the sandbox's request log: every GCP record (REST and gRPC) names
its operation and whether it mutates, so a re-run's writes are listed by name.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.registry import provider_for
from sandbox.server import Sandbox
from shared.engine.types import EnsureResult, Pending, Resource, ResourceCall
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLL_LIMIT_SECONDS = 90.0


def example_spec(name: str = "gcp-to-azure", twin: str | None = None, **overrides: Any) -> dict[str, Any]:
    spec = copy.deepcopy(json.loads((EXAMPLES / name / "twin.json").read_text()))
    if twin:
        spec["twin"]["name"] = twin
    for key, value in overrides.items():
        spec[key] = value
    return spec


def unique_twin() -> str:
    return "g" + uuid.uuid4().hex[:7]


def plan_for(spec: dict[str, Any]) -> Plan:
    return build_plan(spec_from_dict(spec))


@dataclass
class SandboxHandle:
    sb: Sandbox

    def seq(self) -> int:
        return self.sb.ctx.request_log.last_seq()

    def requests(self, since: int) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.sb.ctx.request_log.since(since) if r.cloud == "gcp"]

    def writes(self, since: int) -> list[str]:
        """The mutating GCP calls since `since`, by operation (the request log's own flag)."""
        return [f"{r.get('operation') or r['method'] + ' ' + r['url']}" for r in self.requests(since) if r.get("mutating")]

    def profile(self, name: str, seed: int = 0) -> None:
        self.sb.ctx.faults.set_profile(name, seed)

    def resources(self) -> list[dict[str, str]]:
        return list(self.sb.list_resources().get("gcp", []))

    @property
    def endpoints(self) -> dict[str, Any]:
        return dict(self.sb.endpoints["gcp"])

    @property
    def project(self) -> str:
        return str(self.endpoints["project_id"])

    def client(self, client_cls: type, credentials: Any = None) -> Any:
        """A Google REST client on the sandbox (anonymous unless `credentials`), as a tester reads."""
        from google.auth.credentials import AnonymousCredentials

        return client_cls(transport="rest", credentials=credentials or AnonymousCredentials(),
                          client_options={"api_endpoint": self.endpoints["api_endpoint"]})

    def storage(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoints["storage_emulator_host"]})

    def iam(self) -> Any:
        import grpc
        from google.cloud import iam_admin_v1
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

        return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=grpc.insecure_channel(
            self.endpoints["grpc_host"])))

    def twin_resources(self, twin: str) -> list[dict[str, str]]:
        """The sandbox's GCP objects whose name contains the twin's name (lower case)."""
        return [r for r in self.resources() if twin.lower() in r["name"].lower()]


@dataclass
class Walker:
    """Drives a plan's GCP resources like the engine: ensure (+poll until done), record outputs."""

    plan: Plan
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    polls: int = 0
    settings_polls: int = 0
    actions: dict[str, str] = field(default_factory=dict)

    @property
    def twin(self) -> str:
        return self.plan.twin

    def call(self, rid: str, pending: Any = None, settings: dict[str, str | None] | None = None) -> ResourceCall:
        r = self.plan.resource(rid)
        known = {k: v for o in self.outputs.values() for k, v in o.items()}
        wired: dict[str, str | None] = {w.setting: known[w.output] for w in self.plan.wires_into(rid) if w.output in known}
        resource = Resource.from_dict(r.to_json(include_config=True))
        return ResourceCall(twin=self.twin, resource=resource, settings=wired if settings is None else settings,
                            current=self.outputs.get(rid, {}), pending=pending)

    def drive(self, rid: str, first: EnsureResult) -> EnsureResult:
        result = first
        deadline = time.monotonic() + POLL_LIMIT_SECONDS
        r = self.plan.resource(rid)
        while result.pending is not None:
            assert time.monotonic() < deadline, f"{rid}: still pending after {POLL_LIMIT_SECONDS}s: {result}"
            time.sleep(min(result.pending.poll_after_seconds, 0.5))
            self.polls += 1
            result = provider_for(r.provider, r.kind).poll(self.call(rid, result.pending))
        return result

    def ensure(self, rid: str) -> EnsureResult:
        r = self.plan.resource(rid)
        result = self.drive(rid, provider_for(r.provider, r.kind).ensure(self.call(rid)))
        self.actions[rid] = result.action
        if r.produces:
            self.outputs[rid] = dict(result.outputs)
        return result

    def order(self, upto: str | None = None) -> list[str]:
        order = [rid for rid in self.plan.topological_order() if self.plan.resource(rid).provider in ("gcp", "control")]
        if upto is not None:
            wanted = self.closure(upto)
            order = [rid for rid in order if rid in wanted]
        return order

    def ensure_all(self, upto: str | None = None) -> dict[str, EnsureResult]:
        return {rid: self.ensure(rid) for rid in self.order(upto)}

    def closure(self, rid: str) -> set[str]:
        seen: set[str] = set()
        stack = [rid]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(n for n in self.plan.resource(cur).needs if self.plan.resource(n).provider in ("gcp", "control"))
        return seen

    def read(self, rid: str) -> Any:
        r = self.plan.resource(rid)
        return provider_for(r.provider, r.kind).read(self.call(rid))

    def apply_settings(self, rid: str, settings: dict[str, str | None]) -> bool:
        """Whether the settings were written, once they serve (a pending apply is called again
        with its token, as `settings_rounds` does); `self.settings_polls` counts those calls."""
        r = self.plan.resource(rid)
        provider = provider_for(r.provider, r.kind)
        outcome = provider.apply_settings(self.call(rid, settings=settings))
        deadline = time.monotonic() + POLL_LIMIT_SECONDS
        while isinstance(outcome, Pending):
            assert time.monotonic() < deadline, f"{rid}: settings still pending after {POLL_LIMIT_SECONDS}s"
            time.sleep(min(outcome.poll_after_seconds, 0.5))
            self.settings_polls += 1
            outcome = provider.apply_settings(self.call(rid, outcome, settings=settings))
        return outcome

    def delete(self, rid: str) -> EnsureResult:
        r = self.plan.resource(rid)
        return self.drive(rid, provider_for(r.provider, r.kind).delete(self.call(rid)))

    def delete_all(self, upto: str | None = None) -> dict[str, EnsureResult]:
        return {rid: self.delete(rid) for rid in reversed(self.order(upto))}
