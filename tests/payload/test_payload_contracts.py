"""Contracts between the deployer (plan, shared.contracts) and the payload functions."""

from __future__ import annotations

import ast
import importlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import azure.functions as func
import pytest

from payload_functions.packaging import build_azure_app_package, module_name, supported_functions
from shared.contracts import (
    BOUNDARIES,
    FUNCTIONS,
    RECEIVER_OUTPUTS,
    ROUTE_PREFIX,
    DigitalTwinInfo,
    Function,
    Layer,
    Setting,
    azure_function_url,
    keyed_setting,
    route,
    setting_base,
    settings_read,
    url_path,
)
from shared.plan import Plan, build_plan
from shared.resources import ResourceConfig
from shared.resources.aws import IotTopicRuleConfig, LambdaConfig
from shared.resources.azure import FunctionAppConfig
from shared.resources.gcp import CloudFunctionConfig
from shared.spec import TwinSpec

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ("aws", "azure")
"""Providers of the parametrized plan tests (2^7 placements); GCP placements are checked by
`test_every_gcp_placement_injects_only_settings_its_functions_read` over all 3^7 with the L4/L5 rule."""
FUNCTION_PROVIDERS = ("aws", "azure", "gcp")
FUNCTION_KINDS = {"lambda": "aws", "function-app": "azure", "cloud-function": "gcp"}
SLOTS = ("layer_1_provider", "layer_2_provider", "layer_3_hot_provider", "layer_3_cold_provider",
         "layer_3_archive_provider", "layer_4_provider", "layer_5_provider")
# Read by the Functions host / the Azure SDK, not by our code (no function declares them).
AZURE_PLATFORM_READS = frozenset({Setting.AZURE_WEBJOBS_STORAGE, Setting.FUNCTIONS_WORKER_RUNTIME,
                                  Setting.FUNCTIONS_EXTENSION_VERSION, Setting.AZURE_CLIENT_ID,
                                  Setting.WEBSITE_HOSTNAME})
PLATFORM_READS = {"aws": frozenset(), "azure": AZURE_PLATFORM_READS, "gcp": frozenset()}
# Planned functions that have no implementation here yet (none left: event-feedback was the last).
NOT_IMPLEMENTED: set[Function] = set()
USER_PACKAGES = {"event-action"}
TRIGGER_BINDINGS = {"http": "httpTrigger", "event-grid": "eventGridTrigger", "timer": "timerTrigger"}

SUPPORTED = {p: frozenset(supported_functions(p)) for p in FUNCTION_PROVIDERS}
IMPLEMENTED = [(p, f) for p in FUNCTION_PROVIDERS for f in supported_functions(p)]


def _module(provider: str, fn: Function) -> ModuleType:
    return importlib.import_module(module_name(provider, fn))


@pytest.mark.parametrize(("provider", "fn"), IMPLEMENTED, ids=[f"{p}-{f}" for p, f in IMPLEMENTED])
def test_declared_reads_equal_the_contract(provider: str, fn: Function) -> None:
    module = _module(provider, fn)
    contract = settings_read(fn, provider)
    assert fn == module.FUNCTION
    undeclared = module.READS - contract
    unread = contract - module.READS - PLATFORM_READS[provider]
    assert not undeclared, f"{provider} {fn} reads settings shared.contracts does not declare: {sorted(undeclared)}"
    assert not unread, f"shared.contracts declares settings {provider} {fn} never reads: {sorted(unread)}"


@pytest.mark.parametrize(("provider", "fn"), IMPLEMENTED, ids=[f"{p}-{f}" for p, f in IMPLEMENTED])
def test_module_source_names_only_declared_settings(provider: str, fn: Function) -> None:
    module = _module(provider, fn)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    named = {Setting[node.attr] for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Setting"}
    assert named <= module.READS, f"{sorted(named - module.READS)} used but not in READS"


def test_every_implemented_azure_function_has_the_contract_trigger_name_route_and_auth() -> None:
    app = func.FunctionApp()
    for fn in supported_functions("azure"):
        app.register_functions(_module("azure", fn).bp)
    indexed = {str(f.get_function_name()): f.get_bindings_dict()["bindings"][0] for f in app.get_functions()}
    assert set(indexed) == {str(f) for f in supported_functions("azure")}
    for name, binding in indexed.items():
        contract = FUNCTIONS[Function(name)]
        assert binding["type"] == TRIGGER_BINDINGS[contract.trigger], name
        if contract.trigger == "http":
            assert binding["route"] == route(contract.name)
            assert getattr(binding["authLevel"], "value", binding["authLevel"]) == ("anonymous" if contract.receiver else "function"), name


def test_every_route_a_sender_is_given_is_served_by_a_receiver() -> None:
    package = build_azure_app_package("receivers", [f for f in supported_functions("azure") if FUNCTIONS[f].receiver])
    import io
    import zipfile

    host = json.loads(zipfile.ZipFile(io.BytesIO(package.data)).read("host.json"))
    assert host["extensions"]["http"]["routePrefix"] == ROUTE_PREFIX
    for boundary in BOUNDARIES:
        for receiver in boundary.receivers:
            assert receiver in supported_functions("azure"), f"no Azure {receiver} for {boundary.name}"
            assert receiver in supported_functions("aws"), f"no AWS {receiver} for {boundary.name}"
            # A GCP receiver is a function of its own: its URL is the function's URL, no route.
            assert receiver in supported_functions("gcp"), f"no GCP {receiver} for {boundary.name}"
            url = azure_function_url("app.example.net", receiver)
            assert url.endswith(f"/{ROUTE_PREFIX}/{route(receiver)}") and url_path(receiver) in url
            assert str(receiver) in package.functions
        for output, _setting in boundary.url_settings:
            assert output in RECEIVER_OUTPUTS.values()
    assert str(Function.ADT_PUSHER) in package.functions


def _spec(combo: tuple[str, ...], **options: bool) -> TwinSpec:
    data = json.loads((ROOT / "examples" / "mixed" / "twin.json").read_text())
    data["providers"] = dict(zip(SLOTS, combo, strict=True))
    data["options"] = {**data.get("options", {}), **options}
    return TwinSpec.model_validate(data)


def _plans() -> list[tuple[str, Plan]]:
    out = []
    for combo in itertools.product(PROVIDERS, repeat=len(SLOTS)):
        for checking in (True, False):
            out.append((f"{'-'.join(combo)}-{'events' if checking else 'noevents'}",
                        build_plan(_spec(combo, use_event_checking=checking))))
    return out


PLANS = _plans()


def _hosted(resource_kind: str, config: ResourceConfig) -> list[str]:
    if isinstance(config, FunctionAppConfig):
        return [str(h.package) for h in config.functions]
    assert isinstance(config, LambdaConfig | CloudFunctionConfig)
    return [str(config.package)]


def _static_settings(config: ResourceConfig) -> Mapping[str, str]:
    if isinstance(config, FunctionAppConfig):
        return config.app_settings
    return config.environment if isinstance(config, LambdaConfig | CloudFunctionConfig) else {}


def _injection_problems(plan: Plan) -> list[str]:
    """Every setting the plan injects into a function resource is read by a function it hosts,
    and every planned function has an implementation on its cloud."""
    problems: list[str] = []
    for resource in plan.resources:
        provider = FUNCTION_KINDS.get(resource.kind)
        if provider is None:
            continue
        packages = [p for p in _hosted(resource.kind, resource.config) if p not in USER_PACKAGES]
        functions = [Function(p) for p in packages]
        missing = [f for f in functions if f not in SUPPORTED[provider] and f not in NOT_IMPLEMENTED]
        if missing:
            problems.append(f"{resource.id}: no {provider} implementation of {missing}")
        reads: set[str] = set(PLATFORM_READS[provider])
        for fn in functions:
            if fn in SUPPORTED[provider]:
                reads |= _module(provider, fn).READS
            else:
                reads |= settings_read(fn, provider)
        # Keyed settings (a GCP device's processor URL, an action's URL) are read as their base.
        injected = {setting_base(s) for s in plan.settings_of(resource.id)}
        injected |= set(_static_settings(resource.config))
        unread = sorted(injected - reads)
        if unread:
            problems.append(f"{resource.id} gets {unread}, which none of {packages} reads")
        info_text = _static_settings(resource.config).get(str(Setting.DIGITAL_TWIN_INFO))
        info = DigitalTwinInfo.from_json(str(info_text))
        assert {str(layer) for layer in (Layer.L1, Layer.L2, Layer.L3_HOT, Layer.L3_COLD, Layer.L3_ARCHIVE,
                                         Layer.L4)} <= set(info.providers)
    return problems


@pytest.mark.parametrize(("name", "plan"), PLANS, ids=[n for n, _ in PLANS])
def test_plan_injects_only_settings_its_functions_read(name: str, plan: Plan) -> None:
    problems = _injection_problems(plan)
    assert not problems, "\n".join(problems)


# Every URL a GCP function produces, and the function whose package answers it: a Cloud Function's
# URL is the function itself (any path reaches it), so a caller reaches the right code exactly when
# the output comes from the function the setting names.
GCP_URL_FUNCTIONS: dict[str, Function] = {
    **{str(output): fn for fn, output in RECEIVER_OUTPUTS.items()},
    "PROCESSOR_URL": Function.PROCESSOR, "PERSISTER_URL": Function.PERSISTER,
    "EVENT_CHECKER_URL": Function.EVENT_CHECKER, "CONNECTOR_URL": Function.CONNECTOR,
    "LOCAL_HOT_READER_URL": Function.HOT_READER, "EVENT_ACTION_URL": Function.EVENT_ACTION,
}


def _gcp_url_problems(plan: Plan) -> list[str]:
    """Every URL wired from a GCP function is produced by the function that serves that call, and
    every public GCP function is a receiver that checks the token (the others admit only the twin's
    own service account)."""
    problems: list[str] = []
    by_id = {r.id: r for r in plan.resources}
    for wire in plan.wires:
        producer = by_id[wire.producer]
        if producer.kind != "cloud-function":
            continue
        assert isinstance(producer.config, CloudFunctionConfig)
        base, _, key = str(wire.output).partition(":")
        expected = GCP_URL_FUNCTIONS.get(base)
        if expected is None or producer.config.package != expected:
            problems.append(f"{wire.consumer} calls {wire.output} of {producer.id} ({producer.config.package}), "
                            f"which is not the {expected} function")
        if key:
            # A keyed URL goes to the setting of the same key, from the function of that key.
            serves = producer.config.processors if base == "PROCESSOR_URL" else (producer.config.user_function,)
            if wire.setting != keyed_setting(Setting(base), key) or serves != (key,):
                problems.append(f"{wire.consumer}: {wire.setting} gets {wire.output} of {producer.id}, which "
                                f"serves {serves}")
    for r in plan.resources:
        if r.kind == "cloud-function":
            assert isinstance(r.config, CloudFunctionConfig)
            if r.config.public != FUNCTIONS[Function(r.config.package)].receiver:
                problems.append(f"{r.id}: public={r.config.public} but receiver={FUNCTIONS[Function(r.config.package)].receiver}")
            if r.config.topic is not None and r.config.package != Function.DISPATCHER:
                problems.append(f"{r.id}: only the dispatcher is triggered by the telemetry topic")
    return problems


def _function_host(plan: Plan, provider: str, layer: str, fn: Function) -> str:
    return {"azure": f"azure/{layer}/function-app", "aws": f"aws/{layer}/{fn}", "gcp": f"gcp/{layer}/{fn}"}[provider]


def test_every_gcp_placement_injects_only_settings_its_functions_read() -> None:
    """All 3^7 placements with GCP in them (L4 and L5 on aws or azure: GCP hosts neither), with and
    without event checking: what the plan injects is read, what the GCP persister, connector and
    dispatcher need in that placement is wired, every URL a GCP function is given is served by the
    function it names, the plan is deployable, and every planned Cloud Function packages."""
    from payload_functions.packaging import build_for_resource
    from shared.contracts import TwinUpdatePath, twin_update_path

    problems: list[str] = []
    packaged: set[str] = set()
    count = 0
    for combo in itertools.product(FUNCTION_PROVIDERS, repeat=len(SLOTS) - 2):
        if "gcp" not in combo:
            continue
        for l4, l5 in itertools.product(PROVIDERS, repeat=2):
            for checking in (True, False):
                spec = _spec((*combo, l4, l5), use_event_checking=checking)
                plan, plan_devices = build_plan(spec), spec.devices
                count += 1
                name = "-".join((*combo, l4, l5))
                problems += [f"{name}: {p}" for p in _injection_problems(plan)]
                l1, l2, hot = combo[0], combo[1], combo[2]
                if l2 == "gcp":
                    wired = set(plan.settings_of(_function_host(plan, "gcp", "L2", Function.PERSISTER)))
                    needed = {Setting.REMOTE_WRITER_URL, Setting.INTER_CLOUD_TOKEN} if hot != "gcp" else set()
                    if twin_update_path(l1, l2, l4) == TwinUpdatePath.REMOTE_ADT_PUSHER:
                        needed |= {Setting.REMOTE_ADT_PUSHER_URL, Setting.INTER_CLOUD_TOKEN}
                    if checking:
                        needed.add(Setting.EVENT_CHECKER_URL)
                    if needed - wired:
                        problems.append(f"{name}: the GCP persister lacks {sorted(needed - wired)}")
                if l1 == "gcp":
                    dispatcher = set(plan.settings_of(_function_host(plan, "gcp", "L1", Function.DISPATCHER)))
                    targets = ({keyed_setting(Setting.PROCESSOR_URL, d.id) for d in plan_devices} if l2 == "gcp"
                               else {str(Setting.CONNECTOR_URL)})
                    if targets - dispatcher:
                        problems.append(f"{name}: the GCP dispatcher lacks {sorted(targets - dispatcher)}")
                    if l2 != "gcp":
                        connector = set(plan.settings_of(_function_host(plan, "gcp", "L1", Function.CONNECTOR)))
                        if not {Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN} <= connector:
                            problems.append(f"{name}: the GCP connector lacks its remote ingestion or token")
                problems += [f"{name}: {p}" for p in _gcp_url_problems(plan)]
                if plan.deployable():
                    problems.append(f"{name}: not deployable: {plan.deployable()}")
                for r in plan.resources:
                    if r.kind == "cloud-function" and str(r.config.package) not in USER_PACKAGES | packaged:
                        build_for_resource(r.kind, r.name, r.config)
                        packaged.add(str(r.config.package))
    assert count == (3 ** 5 - 2 ** 5) * 2 * 2 * 2
    assert not problems, "\n".join(problems[:40])
    # Event actions carry users' code: planned and wired in tests/bundle (test_gcp_configurations_...),
    # packaged and run in tests/gcp/test_gcp_user_code.py.
    assert packaged == {str(f) for f in supported_functions("gcp")} - {str(Function.EVENT_ACTION)}


@pytest.mark.parametrize(("name", "plan"), PLANS[::2], ids=[n for n, _ in PLANS[::2]])
def test_plan_wires_what_the_persister_and_senders_require(name: str, plan: Plan) -> None:
    """The settings the runtime requires in a placement are wired by the plan in that placement."""
    from shared.contracts import TwinUpdatePath, twin_update_path

    info = next(DigitalTwinInfo.from_json(_static_settings(r.config)[str(Setting.DIGITAL_TWIN_INFO)])
                for r in plan.resources if r.kind in ("lambda", "function-app"))
    p = info.providers
    l2 = p[str(Layer.L2)]
    persister = "azure/L2/function-app" if l2 == "azure" else f"aws/L2/{Function.PERSISTER}"
    wired = set(plan.settings_of(persister))
    if p[str(Layer.L3_HOT)] != l2:
        assert {Setting.REMOTE_WRITER_URL, Setting.INTER_CLOUD_TOKEN} <= wired
    path = twin_update_path(p["L1"], l2, p["L4"])
    if path == TwinUpdatePath.REMOTE_ADT_PUSHER:
        assert Setting.REMOTE_ADT_PUSHER_URL in wired
    if path == TwinUpdatePath.PERSISTER_DIRECT:
        assert Setting.ADT_INSTANCE_URL in wired
    if p["L1"] != l2:
        connector = "azure/L1/function-app" if p["L1"] == "azure" else f"aws/L1/{Function.CONNECTOR}"
        assert {Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN} <= set(plan.settings_of(connector))


@pytest.mark.parametrize("example", ["azure-only", "aws-only", "mixed"])
def test_every_planned_payload_package_of_the_examples_builds(example: str) -> None:
    """With feedback on (as the examples ask), every planned Lambda / Function App packages:
    `event-feedback` was the last planned function without an implementation."""
    from payload_functions.packaging import build_for_resource

    spec = TwinSpec.model_validate(json.loads((ROOT / "examples" / example / "twin.json").read_text()))
    plan = build_plan(spec)
    built: dict[str, tuple[str, ...]] = {}
    for r in plan.resources:
        if r.kind in ("lambda", "function-app") and not set(_hosted(r.kind, r.config)) & USER_PACKAGES:
            assert isinstance(r.config, FunctionAppConfig | LambdaConfig)
            built[r.id] = build_for_resource(r.kind, r.name, r.config).functions
    feedback = str(Function.EVENT_FEEDBACK)
    planned = any(feedback in _hosted(r.kind, r.config) for r in plan.resources if r.kind in ("lambda", "function-app"))
    if example in ("azure-only", "aws-only"):
        assert planned  # L1 and L2 share a cloud and the examples ask for feedback
    assert any(feedback in fns for fns in built.values()) == planned


@pytest.mark.parametrize("example", ["azure-only", "aws-only", "mixed"])
def test_event_checker_feedback_requests_are_what_event_feedback_accepts(example: str) -> None:
    """Each rule's feedback, as both event checkers build it (`feedback_for`), passes
    `event-feedback`'s validation and names the device the spec names."""
    from payload_functions.core.events import feedback_for, parse_feedback

    spec = TwinSpec.model_validate(json.loads((ROOT / "examples" / example / "twin.json").read_text()))
    rules = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.events]  # the plan's EVENT_RULES form
    with_feedback = [r for r in rules if (r.get("action") or {}).get("feedback")]
    assert with_feedback, f"{example} has no rule with feedback"
    for rule in with_feedback:
        request = feedback_for(rule, {"device_id": "some-device"}, spec.twin.name)
        assert request is not None
        parsed = parse_feedback(request, spec.twin.name)
        assert parsed.device_id == rule["action"]["feedback"]["iotDeviceId"]
        assert parsed.payload == rule["action"]["feedback"]["payload"]


def _mqtt_filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter semantics (`+` one level, `#` the rest)."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def test_feedback_topic_is_not_routed_back_into_the_dispatcher() -> None:
    """The aws-only plan's IoT rule selects the telemetry topic; feedback published to
    `AwsNaming.feedback_topic` must not loop back into the pipeline as telemetry."""
    import re

    from shared.naming import AwsNaming

    spec = TwinSpec.model_validate(json.loads((ROOT / "examples" / "aws-only" / "twin.json").read_text()))
    plan = build_plan(spec)
    rules = [r for r in plan.resources if r.kind == "iot-topic-rule"]
    assert rules
    for rule in rules:
        assert isinstance(rule.config, IotTopicRuleConfig)
        match = re.search(r"FROM '([^']+)'", rule.config.sql)
        assert match, rule.config.sql
        for device in spec.devices:
            topic = AwsNaming(spec.twin.name).feedback_topic(device.id)
            assert topic.startswith(f"{spec.twin.name}/")  # inside the feedback Lambda's iot:Publish grant
            assert not _mqtt_filter_matches(match.group(1), topic)
    assert _mqtt_filter_matches("a/+/c", "a/b/c") and _mqtt_filter_matches("a/#", "a/b/c")
