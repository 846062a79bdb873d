"""Pure parts of the engine: error classification, the state entity's operations, settings
computation, the custom status size, and the plan adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from botocore.exceptions import ClientError

from activities import registry
from activities.providers.control import GeneratedSecret
from orchestrators import twin_state
from orchestrators.common import child_id
from orchestrators.progress import Progress
from shared.contracts import ControlPlaneSetting
from shared.engine import errors
from shared.engine.orchestrations import DeployInput, EngineOptions
from shared.engine.plan import EnginePlan, Wire, build_engine_plan, engine_plan
from shared.engine.state import (
    Desired,
    OutputRecord,
    OutputValue,
    ResourceRecord,
    TwinState,
    desired_settings,
    record_outputs,
)
from shared.engine.types import EnsureResult, Pending, Resource, ResourceCall

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Resp:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "x"
        self.headers: dict[str, str] = {}

    def text(self) -> str:
        return ""


def _http(status: int, message: str = "boom") -> HttpResponseError:
    exc = HttpResponseError(message=message)
    exc.status_code = status
    return exc


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_http_throttling_and_outages_are_transient(status: int) -> None:
    assert errors.classify(_http(status)).kind == errors.TRANSIENT


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_http_client_errors_are_permanent_with_hints(status: int) -> None:
    error = errors.classify(_http(status))
    assert error.kind == errors.PERMANENT
    if status in (401, 403, 404):
        assert "(" in str(error)  # an actionable hint


def test_conflicts_retry_except_taken_names() -> None:
    assert errors.classify(_http(409, "AnotherOperationInProgress")).kind == errors.TRANSIENT
    assert errors.classify(_http(409, "StorageAccountAlreadyTaken")).kind == errors.PERMANENT


def test_aws_codes() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                             "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateTable")
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "CreateTable")
    assert errors.classify(throttled).kind == errors.TRANSIENT
    assert errors.classify(denied).kind == errors.PERMANENT
    assert "permission" in str(errors.classify(denied))


def test_connection_problems_are_transient() -> None:
    assert errors.classify(ServiceRequestError("connection reset")).kind == errors.TRANSIENT
    assert errors.classify(TimeoutError()).kind == errors.TRANSIENT
    assert errors.classify(ValueError("bad")).kind == errors.PERMANENT


def test_classification_survives_the_host_reason_text() -> None:
    text = errors.encode(errors.TransientError("HTTP 503: busy"), "azure/L4/adt")
    reason = f"Activity function 'resource_ensure' failed: RuntimeError: {text} \n Traceback (most recent call last): ..."
    failure = errors.decode(reason)
    assert failure.transient and failure.message == "azure/L4/adt: HTTP 503: busy"
    assert not errors.decode("Activity function 'x' failed: KeyError: 'boom'").transient


def test_secrets_are_redacted_from_error_text() -> None:
    secret = "s3cr3t-value-123456"
    text = errors.encode(errors.PermanentError(f"failed calling https://x/api?code=abc123 with {secret} "
                                               "AccountKey=zzz; Bearer eyJhbGciOi"), "r", [secret])
    assert secret not in text and "abc123" not in text and "zzz" not in text and "eyJhbGciOi" not in text


def test_types_round_trip() -> None:
    call = ResourceCall("t", Resource("a/L1/x", "L1", "a", "k", ("n",), ("O",), {"c": 1}), {"S": "v"}, {"O": "o"},
                        Pending({"op": 1}, 2.5, "d"))
    assert ResourceCall.from_dict(json.loads(json.dumps(call.to_dict()))) == call
    result = EnsureResult("created", {"O": "v"}, None)
    assert EnsureResult.from_dict(result.to_dict()) == result
    plan = build_engine_plan(json.loads((EXAMPLES / "aws-to-azure" / "twin.json").read_text()))
    deploy = DeployInput(plan, EngineOptions(max_parallel=3), "old", prune=False)
    assert DeployInput.from_dict(json.loads(json.dumps(deploy.to_dict()))) == deploy
    state = TwinState("t", {"r": ResourceRecord("L1", "aws", "k", applied={"O": 2})}, {"O": OutputRecord("v", 2, "p")},
                      (Wire("O", "r", "S", "p"),))
    assert TwinState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_registry_reports_missing_provider_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other tests in this process may have loaded the catch-all fake provider; only the modules the
    # configuration names are consulted, so it does not count here.
    monkeypatch.setenv(ControlPlaneSetting.PROVIDER_MODULES, "activities.providers.control")
    with pytest.raises(errors.PermanentError, match="no provider implements nocloud/nokind"):
        registry.provider_for("nocloud", "nokind")


def test_registry_rejects_unimportable_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ControlPlaneSetting.PROVIDER_MODULES, "no_such_provider_module_xyz")
    with pytest.raises(errors.PermanentError, match="cannot be imported"):
        registry.load_providers()


def test_generated_secret_is_kept_and_previous_starts_empty() -> None:
    res = Resource("control/setup/inter-cloud-token", "setup", "control", "secret", (),
                   ("INTER_CLOUD_TOKEN", "INTER_CLOUD_TOKEN_PREVIOUS"),
                   {"name": "inter-cloud-token", "bytes": 32, "encoding": "urlsafe-base64", "keeps_previous": True})
    decided = GeneratedSecret().ensure(ResourceCall("t", res))
    assert decided.action == "created" and decided.pending is not None and not decided.outputs  # generated on its poll
    first = GeneratedSecret().poll(ResourceCall("t", res, pending=decided.pending))
    assert first.action == "created" and first.pending is None and len(first.outputs["INTER_CLOUD_TOKEN"]) >= 40
    assert first.outputs["INTER_CLOUD_TOKEN_PREVIOUS"] == ""
    again = GeneratedSecret().ensure(ResourceCall("t", res, current=dict(first.outputs)))
    assert again.action == "unchanged" and again.outputs == first.outputs


def _apply(state: TwinState, op: str, data: dict | None = None) -> object:
    return twin_state.apply(state, op, data or {})


def test_state_versions_move_only_on_change() -> None:
    """One function computes versions, for the entity and for the deployment's own view."""
    state = TwinState()
    record = {"layer": "L1", "provider": "aws", "kind": "k"}
    out = _apply(state, "record_resources", {"entries": [{"id": "p", "record": record, "outputs": {"A": {"value": "1"}}}]})
    assert out is None and state.outputs["A"] == OutputRecord("1", 1, "p")
    assert _apply(state, "record_output", {"name": "A", "value": "1", "producer": "p"}) == {"version": 1, "changed": False}
    assert _apply(state, "record_output", {"name": "A", "value": "2", "producer": "p"}) == {"version": 2, "changed": True}
    mine = dict(state.outputs)
    assert record_outputs(mine, "p", {"A": OutputValue("2")})["A"].changed is False
    assert record_outputs(mine, "p", {"A": OutputValue("3")})["A"].version == 3
    assert state.outputs["A"].version == 2  # the copy moved, not the entity's state


def _wired_state() -> TwinState:
    return TwinState(
        wires=(Wire("A", "c1", "S_A"), Wire("B", "c1", "S_B"), Wire("B", "c2", "S_B"), Wire("A", "gone", "S_A")),
        resources={"c1": ResourceRecord(), "c2": ResourceRecord()},
        outputs={"A": OutputRecord("a", 3, "p"), "B": OutputRecord("b", 1, "p")},
    )


def test_desired_settings_are_level_triggered_and_skip_consumers_that_are_current() -> None:
    state = _wired_state()
    assert desired_settings(state, ["A"]) == {"c1": Desired({"S_A": "a", "S_B": "b"}, {"A": 3, "B": 1})}
    assert set(desired_settings(state, None)) == {"c1", "c2"}
    twin_state.record_applied(state, twin_state.RecordApplied({"c1": {"A": 3, "B": 1}, "c2": {"B": 1}}))
    assert desired_settings(state, None) == {}
    assert set(desired_settings(state, None, only_behind=False)) == {"c1", "c2"}
    state.outputs["B"] = OutputRecord("b2", 2, "p")
    assert set(desired_settings(state, None)) == {"c1", "c2"}
    assert desired_settings(state, ["A"]) == {"c1": Desired({"S_A": "a", "S_B": "b2"}, {"A": 3, "B": 2})}


def test_the_lock_is_not_released_while_a_consumer_is_behind() -> None:
    state = _wired_state()
    assert _apply(state, "acquire", {"instance": "deploy-1", "operation": "deploy"})["acquired"] is True
    refused = _apply(state, "acquire", {"instance": "prop-1", "operation": "propagate"})
    assert refused == {"acquired": False, "holder": "deploy-1", "operation": "deploy", "state": None}
    assert _apply(state, "release", {"instance": "deploy-1"}) == {"released": False, "behind": ["c1", "c2"]}
    _apply(state, "record_applied", {"applied": {"c1": {"A": 3, "B": 1}, "c2": {"B": 1}}})
    assert _apply(state, "release", {"instance": "deploy-1"}) == {"released": True, "behind": []}
    assert state.lock is None
    assert _apply(state, "acquire", {"instance": "x", "operation": "deploy"})["acquired"] is True
    assert _apply(state, "acquire", {"instance": "y", "operation": "deploy", "replace": "x"})["acquired"] is True
    state.outputs["A"] = OutputRecord("a2", 4, "p")
    assert _apply(state, "release", {"instance": "y", "force": True}) == {"released": True, "behind": []}


def test_custom_status_stays_small_for_ten_thousand_devices() -> None:
    resources = [Resource(f"azure/L1/device-{i}", "L1", "azure", "iot-device") for i in range(10_000)]
    resources += [Resource(f"aws/L2/fn-{i}", "L2", "aws", "lambda") for i in range(50)]
    progress = Progress.for_resources("deploy", "big", resources, 10_050)
    for r in resources[:5000]:
        progress.started(r.id)
    for r in resources[:2500]:
        progress.finished(r.id, "created")
    progress.fail("azure/L1/device-7", "x" * 5000)
    size = len(json.dumps(progress.status()).encode("utf-16-le"))
    assert size < 4 * 1024, size


def test_options_and_child_ids() -> None:
    assert EngineOptions.from_dict({"max_parallel": 3.0, "retry_first_seconds": 1, "bogus": 1}).max_parallel == 3
    assert EngineOptions.from_dict({"max_parallel": True}).max_parallel == 8
    assert DeployInput.from_dict({"plan": {"twin": "t"}, "options": {"max_parallel": "x"}}).options == EngineOptions()
    assert "/" not in child_id("twin:t:deploy:1", "azure/L4/adt")


@pytest.mark.parametrize("example", ["aws-only", "aws-to-azure", "azure-only"])
def test_engine_plan_of_examples(example: str) -> None:
    plan = build_engine_plan(json.loads((EXAMPLES / example / "twin.json").read_text()))
    assert engine_plan(json.loads((EXAMPLES / example / "twin.json").read_text())) == plan.to_dict()
    ids = {r.id for r in plan.resources}
    assert plan.problems == ()
    assert all(n in ids for r in plan.resources for n in r.needs)
    assert all(w.consumer in ids for w in plan.wires)
    assert EnginePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_engine_plan_deploys_gcp_layers_but_not_a_gcp_workflow() -> None:
    spec = json.loads((EXAMPLES / "gcp-to-azure" / "twin.json").read_text())
    plan = build_engine_plan(spec)
    assert plan.problems == () and any(r.provider == "gcp" for r in plan.resources)
    spec["options"]["trigger_notification_workflow"] = True
    problems = build_engine_plan(spec).problems
    assert problems and "notification workflow cannot be deployed on gcp" in problems[0]


def test_engine_plan_invalid_spec_is_permanent_with_paths() -> None:
    with pytest.raises(errors.PermanentError, match="invalid spec: .*twin"):
        engine_plan({"twin": {}})


def test_the_registry_serves_only_the_configured_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake registered for every kind must win over real providers imported earlier in the same
    process when the configuration names only the fake, and lose when it names the real ones."""
    import activities.providers.azure  # noqa: F401  (registers the real Azure kinds)
    from activities import registry

    (tmp_path / "registry_probe_fake.py").write_text(
        "from activities.registry import ANY, Provider, register\n\n"
        "@register(ANY, ANY)\nclass Everything(Provider):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(ControlPlaneSetting.PROVIDER_MODULES, "registry_probe_fake")
    assert type(registry.provider_for("azure", "function-app")).__module__ == "registry_probe_fake"
    monkeypatch.delenv(ControlPlaneSetting.PROVIDER_MODULES)
    assert type(registry.provider_for("azure", "function-app")).__module__.startswith("activities.providers.azure")


def test_orchestrators_import_nothing_from_activities() -> None:
    """Orchestrators see only the engine's contract in `shared/` (the typed payloads), never the
    side-effecting code that implements it."""
    import ast

    root = Path(__file__).resolve().parents[2] / "orchestrators"
    offenders = []
    for source in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{source.name}: {n}" for n in names if n == "activities" or n.startswith("activities.")]
    assert offenders == []
