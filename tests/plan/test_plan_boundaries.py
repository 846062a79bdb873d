"""Table-driven: every provider combination for the seven layer slots (L4/L5 never gcp).

For each boundary: the receiver sits in L0 of the receiving cloud exactly when the sender is on
another cloud (and nowhere else), and the sender gets the receiver's URL in the right setting
plus the token. For every (L1, L2, L4) triple: the twin-update path (L4 aws: TwinMaker pulls;
L4 azure: the Event Grid `adt-updater` when L1 = L2 = azure, the Azure persister when only L1 is
elsewhere, the remote persister through the L0 `adt-pusher` when L2 is elsewhere).

The expectations are spelled out here, independently of `shared.contracts.BOUNDARIES`.
"""

from __future__ import annotations

import itertools

import pytest
from plan_specs import (
    PROVIDERS,
    all_placements,
    app_functions,
    host_id,
    hosted,
    make_spec,
    settings,
    static_settings,
)

from shared.contracts import TwinUpdatePath, twin_update_path
from shared.plan import Plan, build_plan
from shared.resources.aws import LambdaConfig
from shared.resources.gcp import CloudFunctionConfig

PLACEMENTS = all_placements()


@pytest.fixture(scope="module")
def plans() -> dict[tuple[str, ...], Plan]:
    return {combo: build_plan(make_spec(combo)) for combo in PLACEMENTS}


def test_combination_count() -> None:
    assert len(PLACEMENTS) == 3**5 * 2 * 2 == 972


# (sender layer index, receiver layer index, receiver function, URL output, sender layer,
#  sender function, sender setting)
PUSH_BOUNDARIES = [
    (0, 1, "ingestion", "INGESTION_URL", "L1", "connector", "REMOTE_INGESTION_URL"),
    (1, 2, "hot-writer", "HOT_WRITER_URL", "L2", "persister", "REMOTE_WRITER_URL"),
    (2, 3, "cold-writer", "COLD_WRITER_URL", "L3_hot", "hot-to-cold-mover", "REMOTE_COLD_WRITER_URL"),
    (3, 4, "archive-writer", "ARCHIVE_WRITER_URL", "L3_cold", "cold-to-archive-mover", "REMOTE_ARCHIVE_WRITER_URL"),
]


@pytest.mark.parametrize("case", PUSH_BOUNDARIES, ids=[c[2] for c in PUSH_BOUNDARIES])
def test_push_boundaries(plans: dict[tuple[str, ...], Plan], case: tuple) -> None:
    s_idx, r_idx, receiver, url_output, s_layer, sender_fn, setting = case
    failures: list[str] = []
    for combo, plan in plans.items():
        sender, target = combo[s_idx], combo[r_idx]
        crosses = sender != target
        for cloud in PROVIDERS:
            want = crosses and cloud == target
            if hosted(plan, cloud, "L0", receiver) != want:
                failures.append(f"{combo}: {receiver} on {cloud} L0 should be {want}")
        consumer = host_id(sender, s_layer, sender_fn)
        got = settings(plan, consumer)
        if crosses:
            if not hosted(plan, sender, s_layer, sender_fn):
                failures.append(f"{combo}: sender {sender_fn} missing on {sender}")
            if got.get(setting) != url_output or got.get("INTER_CLOUD_TOKEN") != "INTER_CLOUD_TOKEN":
                failures.append(f"{combo}: {consumer} lacks {setting}<-{url_output} or the token: {got}")
            producer = plan.producer_of(url_output)
            if producer != host_id(target, "L0", receiver):
                failures.append(f"{combo}: {url_output} produced by {producer}")
        else:
            if plan.producer_of(url_output) is not None or plan.consumers_of(url_output):
                failures.append(f"{combo}: {url_output} planned although {s_layer} and its target share {sender}")
            if setting in got:
                failures.append(f"{combo}: {consumer} got {setting} although the hop stays on {sender}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_local_storage_is_wired_when_the_hop_stays_inside_a_cloud(plans: dict[tuple[str, ...], Plan]) -> None:
    hot_settings = {"aws": "DYNAMODB_TABLE_NAME", "azure": "COSMOS_DB_ENDPOINT", "gcp": "FIRESTORE_DATABASE"}
    cold_settings = {"aws": "COLD_S3_BUCKET_NAME", "azure": "COLD_STORAGE_CONTAINER", "gcp": "COLD_GCS_BUCKET"}
    archive_settings = {"aws": "ARCHIVE_S3_BUCKET_NAME", "azure": "ARCHIVE_STORAGE_CONTAINER", "gcp": "ARCHIVE_GCS_BUCKET"}
    failures = []
    for combo, plan in plans.items():
        _, l2, hot, cold, archive, _, _ = combo
        persister = settings(plan, host_id(l2, "L2", "persister"))
        if (hot_settings[l2] in persister) != (l2 == hot):
            failures.append(f"{combo}: persister local hot store wiring wrong: {persister}")
        mover = settings(plan, host_id(hot, "L3_hot", "hot-to-cold-mover"))
        if hot_settings[hot] not in mover or (cold_settings[hot] in mover) != (hot == cold):
            failures.append(f"{combo}: hot-to-cold mover wiring wrong: {mover}")
        mover = settings(plan, host_id(cold, "L3_cold", "cold-to-archive-mover"))
        if cold_settings[cold] not in mover or (archive_settings[cold] in mover) != (cold == archive):
            failures.append(f"{combo}: cold-to-archive mover wiring wrong: {mover}")
    assert not failures, "\n".join(failures[:20])


def test_hot_reader_boundary(plans: dict[tuple[str, ...], Plan]) -> None:
    """Pulled by a TwinMaker L4 and by the L5 datasource: the readers sit in L0 of the hot cloud
    exactly when one of those pullers is on another cloud."""
    failures = []
    for combo, plan in plans.items():
        hot, l4, l5 = combo[2], combo[5], combo[6]
        remote_l4 = l4 == "aws" and l4 != hot
        want = remote_l4 or l5 != hot
        for cloud in PROVIDERS:
            for fn in ("hot-reader", "hot-reader-last-entry"):
                if hosted(plan, cloud, "L0", fn) != (want and cloud == hot):
                    failures.append(f"{combo}: {fn} on {cloud} L0 should be {want and cloud == hot}")
        # TwinMaker's forwarding readers
        for fn, url, setting in (("dt-reader", "HOT_READER_URL", "REMOTE_READER_URL"),
                                 ("dt-reader-last-entry", "HOT_READER_LAST_ENTRY_URL", "REMOTE_READER_LAST_ENTRY_URL")):
            if hosted(plan, "aws", "L4", fn) != remote_l4:
                failures.append(f"{combo}: aws L4 {fn} should be {remote_l4}")
            if remote_l4:
                got = settings(plan, f"aws/L4/{fn}")
                if got.get(setting) != url or got.get("INTER_CLOUD_TOKEN") != "INTER_CLOUD_TOKEN":
                    failures.append(f"{combo}: aws/L4/{fn} settings {got}")
        if l4 == "aws":
            got = settings(plan, "aws/L4/component-type-temperature-sensor-1")
            want_arn = "HOT_READER_FUNCTION_ARN" if hot == "aws" else "DT_READER_FUNCTION_ARN"
            if got.get("DATA_READER_FUNCTION_ARN") != want_arn:
                failures.append(f"{combo}: component type reads {got}")
        # Grafana datasource
        ds = settings(plan, f"{l5}/L5/grafana-datasource")
        # One reader per hot cloud: the public L0 one whenever it exists, else the local one.
        want_url = "HOT_READER_URL" if want else "LOCAL_HOT_READER_URL"
        local = [r.id for r in plan.resources_in("L3_hot") if "hot-reader" in r.id
                 or (r.kind == "function-app" and any("hot-reader" in f.name for f in app_functions(r)))]
        if bool(local) == want:  # exactly one of: public L0 reader, local L3_hot reader
            failures.append(f"{combo}: local readers {local} although a public reader is {want}")
        if ds != {"DATASOURCE_URL": want_url, "DATASOURCE_TOKEN": "INTER_CLOUD_TOKEN"}:
            failures.append(f"{combo}: datasource settings {ds}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


def test_adt_pusher_and_l0_presence(plans: dict[tuple[str, ...], Plan]) -> None:
    failures = []
    for combo, plan in plans.items():
        l2, l4 = combo[1], combo[4 + 1]
        want = l4 == "azure" and l2 != "azure"
        if hosted(plan, "azure", "L0", "adt-pusher") != want:
            failures.append(f"{combo}: adt-pusher should be {want}")
        for cloud in ("aws", "gcp"):
            if hosted(plan, cloud, "L0", "adt-pusher"):
                failures.append(f"{combo}: adt-pusher on {cloud}")
        persister = settings(plan, host_id(l2, "L2", "persister"))
        if ("REMOTE_ADT_PUSHER_URL" in persister) != want:
            failures.append(f"{combo}: persister REMOTE_ADT_PUSHER_URL should be {want}: {persister}")
        if want:
            assert persister["REMOTE_ADT_PUSHER_URL"] == "ADT_PUSHER_URL"
            pusher = settings(plan, "azure/L0/function-app")
            if pusher.get("ADT_INSTANCE_URL") != "ADT_INSTANCE_URL":
                failures.append(f"{combo}: the pusher app lacks ADT_INSTANCE_URL")
        # An L0 exists on a cloud only when it hosts at least one receiver.
        for cloud in PROVIDERS:
            l0 = plan.resources_in("L0", cloud)
            receivers = [fn for fn in ("ingestion", "hot-writer", "cold-writer", "archive-writer", "hot-reader",
                                       "hot-reader-last-entry", "adt-pusher") if hosted(plan, cloud, "L0", fn)]
            if bool(l0) != bool(receivers):
                failures.append(f"{combo}: L0 on {cloud}: {[r.id for r in l0]} vs receivers {receivers}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"


EXPECTED_PATH = {
    # (L1, L2, L4) -> path: each reading updates the twin exactly once, on exactly one path
    **{(l1, l2, "aws"): TwinUpdatePath.PULL for l1 in PROVIDERS for l2 in PROVIDERS},
    **{(l1, l2, "azure"): TwinUpdatePath.REMOTE_ADT_PUSHER for l1 in PROVIDERS for l2 in ("aws", "gcp")},
    ("azure", "azure", "azure"): TwinUpdatePath.EVENT_GRID_ADT_UPDATER,
    ("aws", "azure", "azure"): TwinUpdatePath.PERSISTER_DIRECT,
    ("gcp", "azure", "azure"): TwinUpdatePath.PERSISTER_DIRECT,
}


@pytest.mark.parametrize("triple", list(itertools.product(PROVIDERS, PROVIDERS, ("aws", "azure"))),
                         ids=lambda t: "-".join(t))
def test_twin_update_path(triple: tuple[str, str, str]) -> None:
    l1, l2, l4 = triple
    expected = EXPECTED_PATH[triple]
    assert twin_update_path(l1, l2, l4) == expected
    # Storage placement does not change the twin path; try two placements.
    for hot in ("aws", "azure"):
        plan = build_plan(make_spec((l1, l2, hot, hot, hot, l4, "azure")))
        assert plan.twin_update == expected
        persister = host_id(l2, "L2", "persister")
        updater = hosted(plan, "azure", "L4", "adt-updater")
        subscription = plan.has("azure/L4/adt-updater-subscription")
        res = plan.resource(persister)
        if l2 == "azure":
            assert next(f for f in app_functions(res) if f.name == "persister").twin_update == expected
        else:
            assert isinstance(res.config, LambdaConfig | CloudFunctionConfig) and res.config.twin_update == expected
        direct = settings(plan, persister).get("ADT_INSTANCE_URL") == "ADT_INSTANCE_URL"
        if expected == TwinUpdatePath.EVENT_GRID_ADT_UPDATER:
            direct = False  # the L2 app may read ADT for the event checker; the persister does not push
        pushes = "REMOTE_ADT_PUSHER_URL" in settings(plan, persister)
        pusher = hosted(plan, "azure", "L0", "adt-pusher")
        assert (updater, subscription) == (expected == TwinUpdatePath.EVENT_GRID_ADT_UPDATER,) * 2
        assert direct == (expected == TwinUpdatePath.PERSISTER_DIRECT)
        assert pushes == pusher == (expected == TwinUpdatePath.REMOTE_ADT_PUSHER)
        if expected == TwinUpdatePath.EVENT_GRID_ADT_UPDATER:
            sub = plan.resource("azure/L4/adt-updater-subscription")
            assert "azure/L1/iot-hub-events" in sub.needs and "azure/L4/function-app" in sub.needs
        if expected == TwinUpdatePath.PULL:
            assert not plan.consumers_of("ADT_INSTANCE_URL")
            assert plan.has("aws/L4/twinmaker-workspace")


def test_dispatcher_targets_processor_or_connector(plans: dict[tuple[str, ...], Plan]) -> None:
    failures = []
    for combo, plan in plans.items():
        l1, l2 = combo[0], combo[1]
        want = "processor" if l1 == l2 else "connector"
        host = plan.resource(host_id(l1, "L1", "dispatcher"))
        env = static_settings(host)
        if env.get("TARGET_FUNCTION") != want:
            failures.append(f"{combo}: dispatcher targets {env.get('TARGET_FUNCTION')}")
        if hosted(plan, l1, "L1", "connector") != (l1 != l2):
            failures.append(f"{combo}: connector presence wrong")
    assert not failures, "\n".join(failures[:20])
