"""Fixtures for the AWS provider tests: one sandbox (moto + our TwinMaker/Grafana) for the
session, the providers pointed at it through the credentials seam (`TWIN_SANDBOX_DIR`), and a
walker that drives a plan's AWS resources through `ensure`/`poll`/`delete` the way the engine
does (outputs recorded, wired settings passed to consumers).

Counting mutating calls, two independent ways: the sandbox's request log (each AWS record names
its operation and whether it mutates), and the operation names boto3 emits in this process
(`before-call` events on the default session: observation through botocore's event system, not
patching). Many AWS reads are POSTs on the wire (IAM/STS query protocol, DynamoDB JSON protocol,
TwinMaker `*-list`), so the HTTP method alone would not do.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from activities.clouds import SANDBOX_DIR_SETTING
from activities.registry import PROVIDER_MODULES_SETTING, provider_for
from sandbox.server import Sandbox
from shared.engine.types import EnsureResult, Pending, Resource, ResourceCall
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLL_LIMIT_SECONDS = 60.0
# Operations that only read although some are POSTs on the wire.
READ_OPERATION = re.compile(r"^(Get|Describe|List|Head|Query|Scan|BatchGet|Search|Select|Lookup)")
# POST paths that are reads in REST services (TwinMaker lists, Resource Groups gets, IoT
# ListAttachedPolicies / ListTargetsForPolicy).
READ_ONLY_POST = re.compile(
    r"(-list|/get-group|/get-group-query|/list-group-resources|^/attached-policies/.*|^/policy-targets/.*)$"
)


# Table items, which only payload functions write.
DATA_PLANE_WRITES = frozenset({"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                               "dynamodb:BatchWriteItem"})


class OperationLog:
    """Every boto3 operation made in this process (service, operation), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[tuple[str, str]] = []

    def __call__(self, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        with self._lock:
            self.ops.append((model.service_model.service_name, model.name))

    def mark(self) -> int:
        with self._lock:
            return len(self.ops)

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.ops[mark:])

    def writes(self, mark: int) -> list[str]:
        return [f"{s}:{op}" for s, op in self.since(mark) if not READ_OPERATION.match(op)]


OPERATIONS = OperationLog()


def example_spec(name: str, twin: str | None = None, **overrides: Any) -> dict[str, Any]:
    spec = copy.deepcopy(json.loads((EXAMPLES / name / "twin.json").read_text()))
    if twin:
        spec["twin"]["name"] = twin
    for key, value in overrides.items():
        spec[key] = value
    return spec


def unique_twin() -> str:
    return "t" + uuid.uuid4().hex[:7]


def plan_for(spec: dict[str, Any]) -> Plan:
    return build_plan(spec_from_dict(spec))


def _mutating_shape(method: str, path: str) -> bool:
    if method in ("PUT", "PATCH", "DELETE"):
        return True
    return method == "POST" and bool(path) and not READ_ONLY_POST.search(path)


@dataclass
class SandboxHandle:
    sb: Sandbox

    def seq(self) -> int:
        return self.sb.ctx.request_log.last_seq()

    def requests(self, since: int) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.sb.control_url}/requests?since={since}", timeout=30) as resp:
            return [r for r in json.loads(resp.read()) if r["cloud"] == "aws"]

    def wire_mutations(self, since: int) -> list[str]:
        """Mutating AWS requests in the sandbox log: by the operation the sandbox names (its
        `mutating` flag); for a record without one, PUT/PATCH/DELETE and POSTs to REST paths
        that are not known reads."""
        out = []
        for r in self.requests(since):
            path = urllib.parse.urlsplit(r["url"]).path
            if r.get("operation") in DATA_PLANE_WRITES:
                # Items written by deployed functions (a Lambda of an earlier test in this shared
                # sandbox finishing late), never by the control plane.
                continue
            if "mutating" in r:
                if r["mutating"]:
                    out.append(str(r.get("operation") or f"{r['method']} {path}"))
            elif _mutating_shape(r["method"], path.rstrip("/")):
                out.append(f"{r['method']} {path}")
        return out

    def profile(self, name: str, seed: int = 0) -> None:
        self.sb.ctx.faults.set_profile(name, seed)

    def resources(self) -> list[dict[str, str]]:
        return list(self.sb.list_resources().get("aws", []))


@dataclass
class Walker:
    """Drives a plan's resources like the engine: ensure (+poll until done), record outputs."""

    plan: Plan
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    polls: int = 0
    settings_polls: int = 0

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
        if r.produces:
            self.outputs[rid] = dict(result.outputs)
        return result

    def aws_order(self, upto: str | None = None) -> list[str]:
        order = [rid for rid in self.plan.topological_order() if self.plan.resource(rid).provider in ("aws", "control")]
        if upto is not None:
            wanted = self.closure(upto)
            order = [rid for rid in order if rid in wanted]
        return order

    def ensure_all(self, upto: str | None = None, skip_kinds: tuple[str, ...] = ()) -> dict[str, EnsureResult]:
        return {rid: self.ensure(rid) for rid in self.aws_order(upto)
                if self.plan.resource(rid).kind not in skip_kinds}

    def closure(self, rid: str) -> set[str]:
        seen: set[str] = set()
        stack = [rid]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(n for n in self.plan.resource(cur).needs if self.plan.resource(n).provider in ("aws", "control"))
        return seen

    def read(self, rid: str) -> Any:
        r = self.plan.resource(rid)
        return provider_for(r.provider, r.kind).read(self.call(rid))

    def apply_settings(self, rid: str, settings: dict[str, str | None]) -> bool:
        """Whether the settings were written, once applied: a pending answer is asked again with
        its token, as the engine's `settings_rounds` does (`settings_polls` counts those calls)."""
        r = self.plan.resource(rid)
        provider, pending = provider_for(r.provider, r.kind), None
        for _ in range(int(POLL_LIMIT_SECONDS / 0.05)):
            outcome = provider.apply_settings(self.call(rid, pending, settings=settings))
            if not isinstance(outcome, Pending):
                return outcome
            pending = outcome
            self.settings_polls += 1
            time.sleep(outcome.poll_after_seconds)
        raise AssertionError(f"{rid}: settings still pending after {POLL_LIMIT_SECONDS}s")

    def delete(self, rid: str) -> EnsureResult:
        r = self.plan.resource(rid)
        return self.drive(rid, provider_for(r.provider, r.kind).delete(self.call(rid)))

    def delete_all(self, upto: str | None = None, skip_kinds: tuple[str, ...] = ()) -> dict[str, EnsureResult]:
        return {rid: self.delete(rid) for rid in reversed(self.aws_order(upto))
                if self.plan.resource(rid).kind not in skip_kinds}


@pytest.fixture(scope="session")
def aws_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    # Register before any client exists: clients copy the session's handlers when created.
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call", OPERATIONS)
    sb = Sandbox(tmp_path_factory.mktemp("aws-sandbox"), profile="instant", seed=0, with_blob=False, with_aws=True)
    sb.start()
    try:
        yield SandboxHandle(sb)
    finally:
        try:
            sb.aws.reset()  # moto's state is process-wide: leave none for later sandboxes
        finally:
            sb.stop()


@pytest.fixture
def sandbox(aws_sandbox: SandboxHandle) -> Iterator[SandboxHandle]:
    """The session sandbox, back on the instant profile after each test."""
    try:
        yield aws_sandbox
    finally:
        aws_sandbox.profile("instant")


@pytest.fixture
def walker(sandbox: SandboxHandle) -> Callable[..., Walker]:
    def make(example: str = "aws-only", **overrides: Any) -> Walker:
        return Walker(plan_for(example_spec(example, unique_twin(), **overrides)))

    return make


@pytest.fixture
def ops() -> OperationLog:
    return OPERATIONS


@dataclass(frozen=True)
class Specs:
    """Spec helpers for test modules (conftest itself is not importable by name)."""

    example: Callable[..., dict[str, Any]]
    unique_twin: Callable[[], str]


@pytest.fixture
def specs() -> Specs:
    return Specs(example_spec, unique_twin)


@pytest.fixture(autouse=True)
def provider_settings(aws_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app settings the providers read, for each test of this folder only (never for the rest
    of the session: later folders run their own control planes in this process)."""
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(aws_sandbox.sb.state_dir))
    monkeypatch.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.aws")
