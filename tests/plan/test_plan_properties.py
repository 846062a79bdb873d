"""Property-based tests of the plan graph (hypothesis) and determinism."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_specs import SLOTS, make_spec, spec_dict, static_settings

from shared.contracts import (
    FUNCTIONS,
    LATE_BOUND_SETTINGS,
    SECRET_OUTPUTS,
    SECRET_SETTINGS,
    Function,
    is_secret_output,
    setting_base,
    settings_read,
)
from shared.plan import Plan, build_plan
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig
from shared.resources.gcp import CloudFunctionConfig
from shared.spec import TwinSpec

provider = st.sampled_from(["aws", "azure", "gcp"])
twin_provider = st.sampled_from(["aws", "azure"])
device_ids = st.lists(
    st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True), min_size=1, max_size=6, unique=True
)


@st.composite
def specs(draw: st.DrawFn) -> TwinSpec:
    placement = [draw(provider) for _ in range(5)] + [draw(twin_provider), draw(twin_provider)]
    ids = draw(device_ids)
    devices = [
        {"id": d, "properties": [{"name": "temperature", "dataType": "DOUBLE"}]} for d in ids
    ]
    options = {
        "use_event_checking": draw(st.booleans()),
        "trigger_notification_workflow": draw(st.booleans()),
        "return_feedback_to_device": draw(st.booleans()),
    }
    events = [
        {
            "condition": f"e.{ids[0]}.temperature > DOUBLE({n})",
            "action": {"type": draw(st.sampled_from(["lambda", "function", "logic_app"])),
                       # Names that look like the twin's own functions but do not clash with them
                       # (clashes are a spec problem, tested separately).
                       "functionName": draw(st.sampled_from([f"action-{n}", f"processor-{ids[0]}",
                                                             f"{ids[0]}-connector-{n}"])),
                       "autoDeploy": draw(st.booleans())},
        }
        for n in range(draw(st.integers(0, 3)))
    ]
    plan_sku = draw(st.sampled_from(["FC1", "Y1", "EP1"]))
    return make_spec(
        tuple(placement),
        devices=devices,
        options=options,
        events=events,
        clouds={"azure": {"functions_plan": plan_sku}},
    )


PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _static_settings(plan: Plan, resource_id: str) -> dict[str, Any]:
    return static_settings(plan.resource(resource_id))


@PROPERTY_SETTINGS
@given(specs())
def test_graph_is_acyclic_and_order_respects_needs(spec: TwinSpec) -> None:
    plan = build_plan(spec)
    order = plan.topological_order()
    assert sorted(order) == sorted(r.id for r in plan.resources)
    position = {rid: i for i, rid in enumerate(order)}
    for r in plan.resources:
        for need in r.needs:
            assert position[need] < position[r.id], f"{r.id} is ordered before {need}"
    total, path = plan.critical_path()
    assert total > 0 and path
    for a, b in zip(path, path[1:], strict=False):
        assert a in plan.resource(b).needs


@PROPERTY_SETTINGS
@given(specs())
def test_wires_connect_existing_resources_and_imply_needs(spec: TwinSpec) -> None:
    plan = build_plan(spec)
    ids = {r.id for r in plan.resources}
    assert len(ids) == len(plan.resources), "resource ids are unique"
    for r in plan.resources:
        provider_name, layer, name = r.id.split("/", 2)
        assert (provider_name, layer) == (r.provider, r.layer) and name
        assert set(r.needs) <= ids
    for w in plan.wires:
        assert w.producer in ids and w.consumer in ids
        assert w.output in plan.resource(w.producer).produces
        if w.producer != w.consumer and not w.late:
            assert w.producer in plan.resource(w.consumer).needs
        # Late-bound wires carry runtime-only settings (URLs); propagation fills them in.
        assert w.late == (w.setting in LATE_BOUND_SETTINGS)
    keys = [(w.output, w.consumer, w.setting) for w in plan.wires]
    assert len(keys) == len(set(keys)), "no duplicate wires"
    # One consumer setting is fed by exactly one output.
    fed = [(w.consumer, w.setting) for w in plan.wires]
    assert len(fed) == len(set(fed))


@PROPERTY_SETTINGS
@given(specs())
def test_every_consumed_output_has_exactly_one_producer(spec: TwinSpec) -> None:
    plan = build_plan(spec)
    producers: dict[str, list[str]] = {}
    for r in plan.resources:
        for out in r.produces:
            producers.setdefault(out, []).append(r.id)
    assert all(len(v) == 1 for v in producers.values()), producers
    assert {o.name: o.producer for o in plan.outputs} == {k: v[0] for k, v in producers.items()}
    for w in plan.wires:
        assert producers[w.output] == [w.producer]


@PROPERTY_SETTINGS
@given(specs())
def test_secrets_are_marked_and_never_in_config(spec: TwinSpec) -> None:
    plan = build_plan(spec)
    for o in plan.outputs:
        assert o.secret == is_secret_output(o.name), o
    for name in SECRET_OUTPUTS:
        out = plan.output(name)
        assert out is None or out.secret
    assert plan.output("INTER_CLOUD_TOKEN") is not None and plan.output("INTER_CLOUD_TOKEN").secret  # type: ignore[union-attr]
    for d in spec.devices:
        cred = plan.output(f"DEVICE_CREDENTIALS:{d.id}")
        assert cred is not None and cred.secret
    for w in plan.wires:
        # A secret setting is only ever filled from a secret output.
        if w.setting in SECRET_SETTINGS:
            assert is_secret_output(w.output), w
        if is_secret_output(w.output):
            assert w.setting in SECRET_SETTINGS, f"{w.output} lands in non-secret setting {w.setting}"
    for r in plan.resources:
        static = _static_settings(plan, r.id)
        assert not set(static) & set(SECRET_SETTINGS), f"{r.id} has a secret in its static config"
        # Secret values only exist at apply time; no secret output name is baked into config either.
        text = json.dumps(r.config.to_json())
        assert not any(f'"{name}"' in text for name in SECRET_OUTPUTS), r.id


@PROPERTY_SETTINGS
@given(specs())
def test_settings_are_ones_the_hosted_functions_read(spec: TwinSpec) -> None:
    """The contract the payload functions will be tested against: every setting the plan
    injects into a function host is one that a function it hosts reads on that cloud."""
    plan = build_plan(spec)
    for r in plan.resources:
        if isinstance(r.config, FunctionAppConfig):
            packages = {str(f.package) for f in r.config.functions}
        elif isinstance(r.config, LambdaConfig | CloudFunctionConfig):
            packages = {str(r.config.package)}
        else:
            continue
        readable: set[str] = set()
        for package in packages:
            fn = Function.PROCESSOR if package == "event-action" else Function(package)
            assert FUNCTIONS[fn]
            readable |= settings_read(fn, r.provider)
        # Keyed settings (GCP: a device's processor URL, an action's URL) are read as their base.
        injected = {setting_base(s) for s in plan.settings_of(r.id)} | set(_static_settings(plan, r.id))
        assert injected <= readable, f"{r.id} gets settings no hosted function reads: {injected - readable}"


@settings(max_examples=40, deadline=None)
@given(specs())
def test_same_spec_same_plan(spec: TwinSpec) -> None:
    again = TwinSpec.model_validate(json.loads(spec.model_dump_json(by_alias=True)))
    first, second = build_plan(spec), build_plan(again)
    assert json.dumps(first.to_json(include_config=True)) == json.dumps(second.to_json(include_config=True))
    assert first.topological_order() == second.topological_order()
    assert first.to_mermaid() == second.to_mermaid()


def test_json_document_shape() -> None:
    doc = build_plan(make_spec(("aws", "aws", "aws", "aws", "aws", "azure", "azure"))).to_json()
    assert {"twin", "resources", "outputs", "wires"} <= set(doc)
    assert doc["twin"] == "plant-a"
    for r in doc["resources"]:
        assert set(r) == {"id", "layer", "provider", "kind", "needs", "produces"}
    for o in doc["outputs"]:
        assert set(o) == {"name", "producer", "secret"}
    for w in doc["wires"]:
        assert set(w) == {"output", "producer", "consumer", "setting"}
    json.dumps(doc)


def test_layers_and_consumers_helpers() -> None:
    plan = build_plan(make_spec(("aws", "aws", "aws", "aws", "aws", "azure", "azure")))
    layers = plan.layers()
    assert list(layers) == ["setup", "L0", "L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5"]
    # Azure L0: the ADT pusher; AWS L0: the hot readers the Azure Grafana pulls.
    assert layers["L0"] == ["aws", "azure"] and layers["setup"] == ["control", "aws", "azure"]
    assert [r.id for r in plan.resources_in("L0", "aws")] == ["aws/L0/hot-reader", "aws/L0/hot-reader-last-entry"]
    # The remote persister re-applied when the pusher URL changes: the heart of the product.
    assert plan.consumers_of("ADT_PUSHER_URL") == ["aws/L2/persister"]
    assert plan.settings_of("aws/L2/persister")["REMOTE_ADT_PUSHER_URL"] == "ADT_PUSHER_URL"
    assert plan.consumers_of("ADT_INSTANCE_URL") == ["azure/L0/function-app"]
    assert "aws/L2/persister" in plan.consumers_of("INTER_CLOUD_TOKEN")
    assert plan.consumers_of("NO_SUCH_OUTPUT") == []


def test_critical_path_with_measured_durations() -> None:
    plan = build_plan(make_spec())
    ids = [r.id for r in plan.resources]
    total, path = plan.critical_path({rid: 1.0 for rid in ids})
    assert total == len(path)
    slow = "azure/L4/digital-twins"
    total2, path2 = plan.critical_path(lambda r: 1000.0 if r.id == slow else 1.0)
    assert slow in path2 and total2 >= 1000


def test_cycle_is_reported() -> None:
    plan = build_plan(make_spec())
    from shared.plan import Resource

    a, b = plan.resources[0], plan.resources[1]
    looped = Plan(plan.twin, plan.placement,
                  [Resource(a.id, a.layer, a.provider, a.kind, a.name, (b.id,), a.produces, a.config),
                   Resource(b.id, b.layer, b.provider, b.kind, b.name, (a.id,), b.produces, b.config)],
                  [], [], plan.twin_update, [])
    try:
        looped.topological_order()
    except ValueError as exc:
        assert "cycle" in str(exc) and a.id in str(exc)
    else:
        raise AssertionError("a cycle must be reported")


def test_gcp_is_deployable_except_its_notification_workflow() -> None:
    plan = build_plan(make_spec(("gcp", "gcp", "aws", "gcp", "gcp", "aws", "aws")))
    assert plan.has("gcp/L1/telemetry-topic") and plan.has("gcp/L2/persister")
    assert plan.deployable() == [] and plan.to_json()["deployable"] is True
    assert build_plan(make_spec()).deployable() == []
    data = spec_dict({"layer_2_provider": "gcp"})
    data["options"] = {**data.get("options", {}), "use_event_checking": True, "trigger_notification_workflow": True}
    blockers = build_plan(TwinSpec.model_validate(data)).deployable()
    assert blockers == ["the notification workflow cannot be deployed on gcp yet (gcp/L2/event-workflow); set "
                        "options.trigger_notification_workflow to false or place L2 on aws"]


def test_l4_or_l5_on_gcp_is_refused_by_build_plan() -> None:
    from shared.validation import SpecError

    data = spec_dict({"layer_4_provider": "gcp", "layer_5_provider": "google"})
    spec = TwinSpec.model_validate(data)
    try:
        build_plan(spec)
    except SpecError as exc:
        assert [p.path for p in exc.problems] == ["providers.layer_4_provider", "providers.layer_5_provider"]
    else:
        raise AssertionError("L4/L5 on gcp must be refused")


def test_device_change_touches_only_its_own_resources() -> None:
    """Adding a device on AWS adds its own resources; every other AWS resource keeps its config."""
    placement = tuple("aws" for _ in SLOTS)
    base = build_plan(make_spec(placement))
    devices = spec_dict(placement)["devices"] + [
        {"id": "humidity-sensor-9", "properties": [{"name": "humidity", "dataType": "DOUBLE"}]}]
    more = build_plan(make_spec(placement, devices=devices))
    before = {r.id: r for r in base.resources}
    changed = [r.id for r in more.resources if r.id in before and r.config != before[r.id].config]
    added = sorted(set(r.id for r in more.resources) - set(before))
    assert changed == []
    assert added == ["aws/L1/device-humidity-sensor-9", "aws/L2/processor-humidity-sensor-9",
                     "aws/L4/component-type-humidity-sensor-9"]


def test_ten_thousand_devices_plan_quickly_and_linearly() -> None:
    """Per-device resources and wires grow by a constant per device; the build stays fast."""
    import time

    def spec_for(n: int) -> TwinSpec:
        devices = [{"id": f"s-{i:05d}", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}
                   for i in range(n)]
        return make_spec(("aws", "azure", "aws", "gcp", "azure", "aws", "azure"), devices=devices)

    small, large = spec_for(10), spec_for(10_000)
    start = time.perf_counter()
    big = build_plan(large)
    elapsed = time.perf_counter() - start
    little = build_plan(small)
    per_device_resources = (len(big.resources) - len(little.resources)) / 9_990
    per_device_wires = (len(big.wires) - len(little.wires)) / 9_990
    assert per_device_resources == 2  # IoT thing, TwinMaker component type (the Azure L2 app lists processors)
    assert per_device_wires == 2  # the component type's two reader ARNs
    assert len(big.topological_order()) == len(big.resources)
    assert elapsed < 5.0, f"10,000 devices took {elapsed:.2f} s"


def test_event_action_name_clashing_with_a_twin_function_is_a_spec_problem() -> None:
    from shared.validation import SpecError

    events = [{"condition": "room-1.temperature-sensor-1.temperature > DOUBLE(30)",
               "action": {"type": "lambda", "functionName": "persister", "autoDeploy": True}},
              {"condition": "room-1.temperature-sensor-1.temperature > DOUBLE(40)",
               "action": {"type": "lambda", "functionName": "ok", "functionNameB": "pressure-sensor-1-processor",
                          "autoDeploy": True}}]
    spec = make_spec(tuple("aws" for _ in SLOTS), events=events)
    try:
        build_plan(spec)
    except SpecError as exc:
        assert [p.path for p in exc.problems] == ["events[0].action.functionName", "events[1].action.functionNameB"]
        assert "plant-a-persister" in exc.problems[0].message and "aws/L2/persister" in exc.problems[0].message
    else:
        raise AssertionError("a clashing event action name must be refused")
    # On Azure the same names are fine: event actions live under their own prefix in the L2 app.
    build_plan(make_spec(tuple("azure" for _ in SLOTS), events=events))


def test_auto_deployed_event_actions_are_planned_but_block_deployment() -> None:
    data = spec_dict()
    data["events"][0]["action"]["autoDeploy"] = True
    data["options"] = {**data.get("options", {}), "use_event_checking": True}
    plan = build_plan(TwinSpec.model_validate({**data, "providers": {k: "aws" for k in data["providers"]}}))
    assert plan.has("aws/L2/event-action-high-temperature")
    [blocker] = plan.deployable()
    assert "autoDeploy" in blocker and "high-temperature" in blocker
    assert plan.to_json()["deployable"] is False
    # On Azure the action is a function inside the L2 app; it blocks the same way.
    data["events"][0]["action"]["type"] = "function"
    [blocker] = build_plan(TwinSpec.model_validate(data)).deployable()
    assert "high-temperature" in blocker
