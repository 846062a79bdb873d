"""A twin touches only what it owns on Google Cloud (issue 12 items 1 and 5), through the real
Google clients against the sandbox. Twin `GREENHOUSE-X` names its service account, buckets,
Firestore database, Cloud Functions and Scheduler jobs like `greenhouse-x`'s (GCP lowercases
them); the same twin name under another control plane names every object alike (its topic and
device accounts too). Each kind's object of another owner is refused by `ensure` (naming the
owner, writing nothing) and left alone by `delete`; an unowned object is adopted and marked; a
twin that lost its state finds its own objects again; a device key created but never recorded
is found and retired on the retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ownership_kit import Driver, example, plan_of, renamed

from activities.clouds import SANDBOX_DIR_SETTING
from activities.providers.gcp._common import firestore_admin, iam_admin, publisher, scheduler, storage
from activities.providers.gcp.firestore import read_owner
from activities.providers.gcp.iot_device import user_keys
from activities.registry import PROVIDER_MODULES_SETTING
from sandbox.server import Sandbox
from shared.contracts import device_credentials_output
from shared.engine.errors import PermanentError
from shared.engine.types import Resource, ResourceCall
from shared.resources.ownership import CONTROL_PLANE

pytestmark = pytest.mark.slow

MOVER = "gcp/L3_hot/hot-to-cold-mover"
SCHEDULE = "gcp/L3_hot/hot-to-cold-mover-schedule"
DEVICE = "gcp/L1/device-climate-sensor-1"
TOPIC = "gcp/L1/telemetry-topic"
ACCOUNT = "gcp/setup/service-account"
FUNCTIONS_BUCKET = "gcp/setup/functions-bucket"
COLD = "gcp/L3_cold/cold-bucket"
FIRESTORE = "gcp/L3_hot/firestore"
# What `GREENHOUSE-X` names like `greenhouse-x` (lower case), one per kind.
CASE_COLLIDING = (ACCOUNT, FUNCTIONS_BUCKET, COLD, FIRESTORE, MOVER, SCHEDULE)
OTHER_PLANE = "another-control-plane"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("ownership-gcp-sandbox"), profile="instant", seed=0, with_blob=False,
                 with_aws=False, with_function_apps=False)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(autouse=True)
def providers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(sandbox.state_dir))
    monkeypatch.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.gcp")


class OtherPlane(Driver):
    """The same twin, managed by another control plane: its plan names every object alike."""

    def call(self, rid: str, pending: Any = None) -> ResourceCall:
        call = super().call(rid, pending)
        config = {**call.resource.config, "owner": {"twin": self.twin, "control_plane": OTHER_PLANE}}
        resource = Resource.from_dict({**call.resource.to_dict(), "config": config})
        return ResourceCall(twin=call.twin, resource=resource, settings=call.settings, current=call.current,
                            pending=call.pending)


@pytest.fixture(scope="module")
def greenhouse_x(sandbox: Sandbox) -> Driver:
    mp = pytest.MonkeyPatch()
    mp.setenv(SANDBOX_DIR_SETTING, str(sandbox.state_dir))
    mp.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.gcp")
    try:
        x = Driver(plan_of(renamed(example("gcp-to-azure"), "greenhouse-x")))
        x.ensure_all(SCHEDULE, DEVICE)
        return x
    finally:
        mp.undo()


def _project(sandbox: Sandbox) -> str:
    return str(sandbox.endpoints["gcp"]["project_id"])


def _state(x: Driver, sandbox: Sandbox) -> dict[str, Any]:
    """What of greenhouse-x a foreign twin could change: every object's owner marks and contents."""
    project = _project(sandbox)
    names = {rid: x.resource_name(rid) for rid in (*CASE_COLLIDING, TOPIC)}
    device = x.plan.resource(DEVICE).config.service_account
    account = iam_admin().get_service_account(
        name=f"projects/{project}/serviceAccounts/{names[ACCOUNT]}@{project}.iam.gserviceaccount.com")
    device_account = iam_admin().get_service_account(
        name=f"projects/{project}/serviceAccounts/{device}@{project}.iam.gserviceaccount.com")
    from activities.providers.gcp.cloud_function import get_function
    from activities.providers.gcp.scheduler_job import job_name

    fn = get_function(x.plan.resource(MOVER).config)
    job = scheduler().get_job(name=job_name(x.plan.resource(SCHEDULE).config))
    buckets = {rid: storage(project).get_bucket(names[rid]) for rid in (FUNCTIONS_BUCKET, COLD)}
    topic = publisher().get_topic(topic=f"projects/{project}/topics/{names[TOPIC]}")
    return {
        "accounts": (account.description, device_account.description, len(user_keys(x.plan.resource(DEVICE).config))),
        "buckets": {rid: (dict(b.labels), sorted(o.name for o in storage(project).list_blobs(b)))
                    for rid, b in buckets.items()},
        "firestore": read_owner(x.plan.resource(FIRESTORE).config),
        "function": (dict(fn.labels), fn.state.name, fn.build_config.source.storage_source.object_,
                     dict(fn.service_config.environment_variables)),
        "job": (job.description, job.schedule, job.http_target.uri),
        "topic": dict(topic.labels),
    }


def _refused(driver: Driver, rid: str, owner: str) -> None:
    with pytest.raises(PermanentError) as failure:
        driver.ensure(rid)
    text = str(failure.value)
    assert owner in text and rid in text, text


def test_names_equal_up_to_case_are_refused_and_never_deleted(greenhouse_x: Driver, sandbox: Sandbox) -> None:
    x = greenhouse_x
    project = _project(sandbox)
    storage(project).bucket(x.resource_name(COLD)).blob("readings/1.json").upload_from_string(b"{}")
    before = _state(x, sandbox)
    assert before["firestore"] == {"DigitalTwin": "greenhouse-x", "ManagedBy": CONTROL_PLANE}
    assert before["topic"]["digital-twin"] == "greenhouse-x"

    upper = Driver(plan_of(renamed(example("gcp-to-azure"), "GREENHOUSE-X")))
    for rid in CASE_COLLIDING:
        assert upper.resource_name(rid) == x.resource_name(rid)
        _refused(upper, rid, "'greenhouse-x'")
        assert not upper.read(rid).exists
    assert _state(x, sandbox) == before
    # Destroying GREENHOUSE-X (say its state recorded them) deletes none of greenhouse-x's objects.
    for rid in reversed(CASE_COLLIDING):
        assert upper.delete(rid).action == "absent", rid
    assert _state(x, sandbox) == before
    for rid in CASE_COLLIDING:
        assert x.read(rid).exists


def test_another_control_planes_twin_is_refused_and_never_deleted(greenhouse_x: Driver, sandbox: Sandbox) -> None:
    x = greenhouse_x
    before = _state(x, sandbox)
    other = OtherPlane(x.plan)
    for rid in (TOPIC, DEVICE, *CASE_COLLIDING):
        _refused(other, rid, f"control plane {CONTROL_PLANE!r}")
    assert _state(x, sandbox) == before
    for rid in (SCHEDULE, MOVER, DEVICE, TOPIC, FIRESTORE, COLD, FUNCTIONS_BUCKET, ACCOUNT):
        assert other.delete(rid).action == "absent", rid
    assert _state(x, sandbox) == before
    # The publisher grant of greenhouse-x's device account is still on its topic.
    from activities.providers.gcp._common import members_of
    from activities.providers.gcp.iot_device import PUBLISHER

    device = x.plan.resource(DEVICE).config.service_account
    policy = publisher().get_iam_policy(request={"resource": f"projects/{_project(sandbox)}/topics/{x.resource_name(TOPIC)}"})
    assert f"serviceAccount:{device}@{_project(sandbox)}.iam.gserviceaccount.com" in members_of(policy, PUBLISHER)


def test_own_objects_are_found_again_after_a_lost_state(greenhouse_x: Driver, sandbox: Sandbox) -> None:
    """A control plane that lost its state (no outputs, no recorded credentials) plans the twin
    again: every object is its own, reconciled, none refused; the device's lost key is replaced
    (the old one retired), since Google never returns a private key twice."""
    x = greenhouse_x
    config = x.plan.resource(DEVICE).config
    old_keys = set(user_keys(config))
    again = Driver(plan_of(renamed(example("gcp-to-azure"), "greenhouse-x")))
    actions = {rid: r.action for rid, r in again.ensure_all(SCHEDULE, DEVICE).items()}
    assert actions[DEVICE] == "updated"
    assert {a for rid, a in actions.items() if rid != DEVICE} == {"unchanged"}, actions
    keys = set(user_keys(config))
    assert len(keys) == 1 and not keys & old_keys
    x.outputs.update(again.outputs)  # the key in use now


def test_an_unmarked_function_and_job_are_adopted(greenhouse_x: Driver, sandbox: Sandbox) -> None:
    """A Cloud Function without owner labels and a Scheduler job without the owner description
    (made by hand, or before owners) are adopted: the update writes the marks back."""
    from google.cloud import functions_v2, scheduler_v1

    from activities.providers.gcp.cloud_function import get_function
    from activities.providers.gcp.scheduler_job import job_name

    x = greenhouse_x
    fn = get_function(x.plan.resource(MOVER).config)
    functions_client = sandbox_client(sandbox, functions_v2.FunctionServiceClient)
    functions_client.update_function(request={"function": {"name": fn.name, "labels": {"team": "plants"}},
                                              "update_mask": {"paths": ["labels"]}}).result(60)
    job = job_name(x.plan.resource(SCHEDULE).config)
    sandbox_client(sandbox, scheduler_v1.CloudSchedulerClient).update_job(request={
        "job": {"name": job, "description": "made by hand"}, "update_mask": {"paths": ["description"]}})
    assert x.read(MOVER).exists and x.read(SCHEDULE).exists  # unowned: the twin's to read
    assert x.ensure(MOVER).action == "updated" and x.ensure(SCHEDULE).action == "updated"
    labels = dict(get_function(x.plan.resource(MOVER).config).labels)
    assert labels["digital-twin"] == "greenhouse-x" and labels["managed-by"] == CONTROL_PLANE, labels
    assert labels["team"] == "plants"  # others' labels are kept
    assert scheduler().get_job(name=job).description.startswith(f"Managed by {CONTROL_PLANE} for twin greenhouse-x")
    assert x.ensure(MOVER).action == "unchanged" and x.ensure(SCHEDULE).action == "unchanged"


def sandbox_client(sandbox: Sandbox, client_cls: type) -> Any:
    """A Google REST client on the sandbox, as a person (not the control plane) would use it."""
    from google.auth.credentials import AnonymousCredentials

    return client_cls(transport="rest", credentials=AnonymousCredentials(),
                      client_options={"api_endpoint": sandbox.endpoints["gcp"]["api_endpoint"]})


def test_unowned_objects_are_adopted_and_marked(sandbox: Sandbox) -> None:
    """Objects nothing marks (made by hand, or before owners) become the twin's: labels, the
    description or the owner document are written."""
    from google.cloud.firestore_admin_v1.types import database as database_types

    d = Driver(plan_of(renamed(example("gcp-to-azure"), "adopter")))
    project = _project(sandbox)
    names = {rid: d.resource_name(rid) for rid in (ACCOUNT, COLD, TOPIC, FIRESTORE)}
    iam_admin().create_service_account(request={"name": f"projects/{project}", "account_id": names[ACCOUNT],
                                                "service_account": {"description": "made by hand"}})
    bucket = storage(project).bucket(names[COLD])
    bucket.labels = {"team": "plants"}
    storage(project).create_bucket(bucket, location="europe-west1")
    publisher().create_topic(request={"name": f"projects/{project}/topics/{names[TOPIC]}"})
    firestore_admin().create_database(request={
        "parent": f"projects/{project}", "database_id": names[FIRESTORE],
        "database": database_types.Database(location_id="europe-west1",
                                            type_=database_types.Database.DatabaseType.FIRESTORE_NATIVE)}).result(30)
    actions = {rid: r.action for rid, r in d.ensure_all(ACCOUNT, COLD, TOPIC, FIRESTORE).items()}
    assert {actions[rid] for rid in names} == {"updated"}, actions
    account = iam_admin().get_service_account(
        name=f"projects/{project}/serviceAccounts/{names[ACCOUNT]}@{project}.iam.gserviceaccount.com")
    assert account.description.startswith(f"Managed by {CONTROL_PLANE} for twin adopter")
    labels = dict(storage(project).get_bucket(names[COLD]).labels)
    assert labels["digital-twin"] == "adopter" and labels["team"] == "plants"
    assert publisher().get_topic(topic=f"projects/{project}/topics/{names[TOPIC]}").labels["managed-by"] == CONTROL_PLANE
    assert read_owner(d.plan.resource(FIRESTORE).config) == {"DigitalTwin": "adopter", "ManagedBy": CONTROL_PLANE}
    for rid in (FIRESTORE, TOPIC, COLD, ACCOUNT):
        assert d.delete(rid).action == "deleted"
        assert not d.read(rid).exists


def test_a_device_key_created_but_never_recorded_is_retired(sandbox: Sandbox) -> None:
    """The host killed between CreateServiceAccountKey and the engine keeping its answer: the
    retry lists the account's keys, issues the one it records and deletes the other; a killed
    create is still reported created (decided before anything was made)."""
    d = Driver(plan_of(renamed(example("gcp-to-azure"), "crasher")))
    d.ensure_all(TOPIC)
    from activities.registry import provider_for

    device = provider_for("gcp", "iot-device")
    decided = device.ensure(d.call(DEVICE))
    assert decided.action == "created" and decided.pending is not None
    config = d.plan.resource(DEVICE).config
    assert not d.read(DEVICE).exists  # decided, nothing made yet
    lost = device.poll(d.call(DEVICE, decided.pending))  # the key is made; its answer never recorded
    assert len(user_keys(config)) == 1
    retried = device.poll(d.call(DEVICE, decided.pending))  # the activity again, from the history
    assert retried.action == "created"
    credentials = json.loads(retried.outputs[device_credentials_output("climate-sensor-1")])
    recorded = credentials["service_account_key"]["private_key_id"]
    assert [k.rsplit("/", 1)[-1] for k in user_keys(config)] == [recorded]
    assert json.loads(lost.outputs[device_credentials_output("climate-sensor-1")])["service_account_key"][
        "private_key_id"] != recorded
    assert d.delete(DEVICE).action == "deleted"
    assert d.delete(TOPIC).action == "deleted"


def test_a_device_account_made_but_not_granted_and_one_half_deleted(sandbox: Sandbox) -> None:
    """Killed after CreateServiceAccount (before the topic grant): the retry finds the account by
    name as its own and grants it. Killed after its grant was taken back (before
    DeleteServiceAccount): the retry deletes the account. An account gone with its grant left: the
    delete takes the grant back, and is done only once it is gone."""
    from activities.providers.gcp._common import change_policy, members_of, owner_description
    from activities.providers.gcp.iot_device import PUBLISHER
    from activities.registry import provider_for

    device_rid = "gcp/L1/device-soil-probe-1"
    d = Driver(plan_of(renamed(example("gcp-to-azure"), "halfway")))
    d.ensure_all(TOPIC)
    project = _project(sandbox)
    config = d.plan.resource(device_rid).config
    member = f"serviceAccount:{config.service_account}@{project}.iam.gserviceaccount.com"
    topic = f"projects/{project}/topics/{d.resource_name(TOPIC)}"
    device = provider_for("gcp", "iot-device")
    decided = device.ensure(d.call(device_rid))
    # What the killed poll did before the kill: the account, with its owner description.
    iam_admin().create_service_account(request={
        "name": f"projects/{project}", "account_id": config.service_account,
        "service_account": {"description": owner_description(d.call(device_rid))}})
    assert member not in members_of(publisher().get_iam_policy(request={"resource": topic}), PUBLISHER)
    resumed = d._drive(device_rid, device.poll(d.call(device_rid, decided.pending)))
    assert resumed.action == "created"
    assert member in members_of(publisher().get_iam_policy(request={"resource": topic}), PUBLISHER)
    assert len(user_keys(config)) == 1

    # What a killed delete did before the kill: the grant taken back, the account not yet deleted.
    get, set_ = (lambda: publisher().get_iam_policy(request={"resource": topic}),
                 lambda p: publisher().set_iam_policy(request={"resource": topic, "policy": p}))
    change_policy(get, set_, PUBLISHER, remove={member})
    assert d.delete(device_rid).action == "deleted"
    assert not d.read(device_rid).exists and not user_keys_left(config)
    # An account deleted by hand, its grant left: the delete takes the grant back.
    iam_admin().create_service_account(request={
        "name": f"projects/{project}", "account_id": config.service_account,
        "service_account": {"description": owner_description(d.call(device_rid))}})
    change_policy(get, set_, PUBLISHER, add={member})
    iam_admin().delete_service_account(request={
        "name": f"projects/{project}/serviceAccounts/{config.service_account}@{project}.iam.gserviceaccount.com"})
    assert d.delete(device_rid).action == "deleted"
    assert member not in members_of(get(), PUBLISHER)
    assert d.delete(device_rid).action == "absent"
    assert d.delete(TOPIC).action == "deleted"


def user_keys_left(config: Any) -> list[str]:
    from google.api_core.exceptions import NotFound

    try:
        return user_keys(config)
    except NotFound:
        return []


def test_a_device_feedback_subscription_of_another_twin_is_refused_and_left_alone(sandbox: Sandbox) -> None:
    """The device's feedback subscription carries the owner labels like every labelled object:
    another twin's subscription under its name (e.g. with another filter) is refused before
    anything is written, never deleted, reused or granted, and a delete leaves it alone; an
    unlabelled one is adopted. Names hold a hash of twin and device, so twin `a` device
    `b-feedback-c` and twin `a-feedback-b` device `c` name different subscriptions."""
    from google.pubsub_v1.services.subscriber import SubscriberClient

    from activities.providers.gcp.iot_device import SUBSCRIBER, feedback_filter, subscription_path
    from shared.naming import GcpNaming

    assert GcpNaming("a").feedback_subscription("b-feedback-c") != GcpNaming("a-feedback-b").feedback_subscription("c")
    spec = renamed(example("gcp-to-azure"), "subowner")
    spec["options"]["return_feedback_to_device"] = True
    d = Driver(plan_of(spec))
    d.ensure_all(TOPIC, "gcp/L1/feedback-topic")
    config = d.plan.resource(DEVICE).config
    name = subscription_path(config)
    assert name is not None
    project = _project(sandbox)
    topic = f"projects/{project}/topics/{config.feedback_topic}"
    hand = sandbox_client(sandbox, SubscriberClient)
    # Another twin's, with another filter: a device ensure would once have deleted and remade it.
    hand.create_subscription(request={"name": name, "topic": topic, "filter": 'attributes.deviceId = "x"',
                                      "labels": {"digital-twin": "other-twin", "managed-by": CONTROL_PLANE}})
    _refused(d, DEVICE, "other-twin")
    theirs = hand.get_subscription(request={"subscription": name})
    assert theirs.filter == 'attributes.deviceId = "x"' and theirs.labels["digital-twin"] == "other-twin"
    assert not d.read(DEVICE).exists  # refused before the device account was made
    assert not any(b.role == SUBSCRIBER for b in hand.get_iam_policy(request={"resource": name}).bindings)
    # A delete (the device account there and ours) leaves the other twin's subscription alone.
    hand.delete_subscription(request={"subscription": name})
    d.ensure(DEVICE)
    hand.delete_subscription(request={"subscription": name})
    hand.create_subscription(request={"name": name, "topic": topic, "filter": feedback_filter(config),
                                      "labels": {"digital-twin": "other-twin", "managed-by": CONTROL_PLANE}})
    assert d.delete(DEVICE).action == "deleted"
    assert hand.get_subscription(request={"subscription": name}).labels["digital-twin"] == "other-twin"
    # Unlabelled (made by hand, or before owners): adopted and labelled, its grant added.
    hand.delete_subscription(request={"subscription": name})
    hand.create_subscription(request={"name": name, "topic": topic, "filter": feedback_filter(config),
                                      "labels": {"team": "plants"}})
    assert d.ensure(DEVICE).action == "created"
    adopted = hand.get_subscription(request={"subscription": name})
    assert adopted.labels["digital-twin"] == "subowner" and adopted.labels["team"] == "plants"
    assert any(b.role == SUBSCRIBER for b in hand.get_iam_policy(request={"resource": name}).bindings)
    assert d.delete(DEVICE).action == "deleted"
    assert [s for s in hand.list_subscriptions(request={"project": f"projects/{project}"}).subscriptions
            if s.name == name] == []
    assert d.delete("gcp/L1/feedback-topic").action == "deleted" and d.delete(TOPIC).action == "deleted"
