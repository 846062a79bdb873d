"""Every GCP resource kind against the sandbox, through the official Google clients (REST and gRPC)
the providers use: `examples/gcp-to-azure`'s GCP side (service account, functions bucket, telemetry
topic, device accounts, Firestore, the eight functions, the cold and archive buckets, both scheduler
jobs) is deployed once for the module, read back with the same clients a person would use, re-run
without a single mutating call, and destroyed (last) leaving nothing of the twin."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from gcp_kit import SandboxHandle, Walker, example_spec, plan_for, unique_twin

from sandbox.gcp.common import identity_token
from shared.contracts import Function, Output, Setting, device_credentials_output, keyed_output
from shared.naming import GcpNaming

pytestmark = pytest.mark.slow

KINDS = {"service-account", "gcs-bucket", "pubsub-topic", "iot-device", "firestore", "cloud-function",
         "scheduler-job"}
PRIVATE = (Function.DISPATCHER, Function.PROCESSOR, Function.PERSISTER, Function.EVENT_CHECKER,
           Function.HOT_TO_COLD_MOVER, Function.COLD_TO_ARCHIVE_MOVER)
PUBLIC = (Function.HOT_READER, Function.HOT_READER_LAST_ENTRY)


@pytest.fixture(scope="module")
def deployed(gcp_sandbox: SandboxHandle) -> Iterator[Walker]:
    # With device feedback: the feedback topic and each device's filtered subscription too.
    w = Walker(plan_for(example_spec("gcp-to-azure", unique_twin(),
                                     options={"use_event_checking": True, "return_feedback_to_device": True})))
    mp = pytest.MonkeyPatch()
    from activities.clouds import SANDBOX_DIR_SETTING
    from activities.registry import PROVIDER_MODULES_SETTING

    mp.setenv(SANDBOX_DIR_SETTING, str(gcp_sandbox.sb.state_dir))
    mp.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.gcp")
    try:
        w.ensure_all()
        yield w
    finally:
        mp.undo()


def _name(w: Walker) -> GcpNaming:
    return GcpNaming(w.twin)


def _email(sandbox: SandboxHandle, account_id: str) -> str:
    return f"{account_id}@{sandbox.project}.iam.gserviceaccount.com"


def _function(sandbox: SandboxHandle, w: Walker, fn: Function | str) -> Any:
    from google.cloud import functions_v2

    region = w.plan.resource(f"gcp/L2/{Function.PERSISTER}").config.region
    # A processor per device: the first device's stands for them.
    function_id = _processors(w)[0].name if fn == Function.PROCESSOR else _name(w).function(str(fn))
    name = f"projects/{sandbox.project}/locations/{region}/functions/{function_id}"
    return sandbox.client(functions_v2.FunctionServiceClient).get_function(name=name)


def _processors(w: Walker) -> list[Any]:
    return [r for r in w.plan.resources if r.id.startswith("gcp/L2/processor-")]


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_every_kind_is_created_with_its_outputs(deployed: Walker, sandbox: SandboxHandle) -> None:
    w = deployed
    gcp = [r for r in w.plan.resources if r.provider == "gcp"]
    assert {r.kind for r in gcp} == KINDS
    assert {w.actions[r.id] for r in gcp} == {"created"}
    outputs = {k: v for o in w.outputs.values() for k, v in o.items()}
    naming = _name(w)
    assert outputs[Output.FIRESTORE_DATABASE] == naming.firestore_database()
    assert outputs[Output.COLD_GCS_BUCKET] == naming.cold_bucket()
    assert outputs[Output.ARCHIVE_GCS_BUCKET] == naming.archive_bucket()
    processors = _processors(w)
    devices = {r.config.device_id for r in w.plan.resources if r.kind == "iot-device"}
    assert devices and {p.config.processors for p in processors} == {(d,) for d in devices}
    urls = [outputs[keyed_output(Output.PROCESSOR_URL, p.config.processors[0])] for p in processors]
    assert len(set(urls)) == len(urls), "each device's processor is a function of its own"
    first = processors[0].config.processors[0]
    for output, fn in ((keyed_output(Output.PROCESSOR_URL, first), Function.PROCESSOR),
                       (Output.PERSISTER_URL, Function.PERSISTER),
                       (Output.HOT_READER_URL, Function.HOT_READER)):
        assert outputs[output] == _function(sandbox, w, fn).service_config.uri
    kinds = {r["type"] for r in sandbox.twin_resources(w.twin)}
    assert {"cloudfunctions.function", "cloudscheduler.job", "pubsub.topic", "firestore.database", "firestore.index",
            "iam.serviceAccount", "storage.bucket"} <= kinds


def test_a_rerun_makes_no_mutating_call(deployed: Walker, sandbox: SandboxHandle) -> None:
    mark = sandbox.seq()
    again = deployed.ensure_all()
    assert {rid: r.action for rid, r in again.items() if r.action != "unchanged"} == {}
    assert sandbox.writes(mark) == []
    assert sandbox.requests(mark), "the re-run read nothing: it proves nothing"


def test_objects_carry_the_twin_as_owner(deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.cloud import scheduler_v1
    from google.pubsub_v1.services.publisher import PublisherClient

    w, naming = deployed, _name(deployed)
    wanted = {"digital-twin": w.twin.lower(), "managed-by": "twin-control-plane"}
    fn = _function(sandbox, w, Function.PERSISTER)
    assert wanted.items() <= dict(fn.labels).items() and fn.labels["twin-layer"] == "l2"
    topic = sandbox.client(PublisherClient).get_topic(topic=f"projects/{sandbox.project}/topics/{naming.telemetry_topic()}")
    assert wanted.items() <= dict(topic.labels).items()
    for bucket in (naming.functions_bucket(), naming.cold_bucket(), naming.archive_bucket()):
        assert wanted.items() <= dict(sandbox.storage().get_bucket(bucket).labels).items()
    # Service accounts and scheduler jobs take no labels: their description names the owner.
    account = sandbox.iam().get_service_account(
        name=f"projects/{sandbox.project}/serviceAccounts/{_email(sandbox, naming.service_account())}")
    assert f"for twin {w.twin} (gcp/setup/service-account)" in account.description
    region = fn.name.split("/")[3]
    job = sandbox.client(scheduler_v1.CloudSchedulerClient).get_job(
        name=f"projects/{sandbox.project}/locations/{region}/jobs/{naming.schedule(str(Function.HOT_TO_COLD_MOVER))}")
    assert f"for twin {w.twin} " in job.description


def test_only_the_twin_account_may_call_private_functions_and_anyone_a_receiver(
        deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.cloud import run_v2

    w = deployed
    runtime = f"serviceAccount:{_email(sandbox, _name(w).service_account())}"
    run = sandbox.client(run_v2.ServicesClient)
    for fn in (*PRIVATE, *PUBLIC):
        service = _function(sandbox, w, fn).service_config.service
        members = {m for b in run.get_iam_policy(request={"resource": service}).bindings if b.role == "roles/run.invoker"
                   for m in b.members}
        assert members == ({"allUsers"} if fn in PUBLIC else {runtime}), (fn, members)
    url = _function(sandbox, w, Function.PERSISTER).service_config.uri
    assert _post(url, {})[0] == 403  # no token: Cloud Run refuses before the code runs
    stranger = identity_token(_email(sandbox, "someone-else"), url)
    assert _post(url, {}, {"Authorization": f"Bearer {stranger}"})[0] == 403
    mine = identity_token(_email(sandbox, _name(w).service_account()), url)
    status, body = _post(url, {}, {"Authorization": f"Bearer {mine}"})
    assert status == 400 and "device" in body, body  # admitted: the persister itself refuses an empty reading
    reader = _function(sandbox, w, Function.HOT_READER).service_config.uri
    status, body = _post(reader, {})
    assert status == 401, body  # admitted by Cloud Run, refused in code without the inter-cloud token


def test_pubsub_trigger_and_runtime_identity(deployed: Walker, sandbox: SandboxHandle) -> None:
    w = deployed
    account = _email(sandbox, _name(w).service_account())
    dispatcher = _function(sandbox, w, Function.DISPATCHER)
    assert dispatcher.event_trigger.pubsub_topic == f"projects/{sandbox.project}/topics/{_name(w).telemetry_topic()}"
    assert dispatcher.event_trigger.retry_policy.name == "RETRY_POLICY_RETRY"
    assert dispatcher.event_trigger.service_account_email == account
    for fn in (*PRIVATE, *PUBLIC):
        f = _function(sandbox, w, fn)
        assert f.service_config.service_account_email == account
        assert f.build_config.source.storage_source.bucket == _name(w).functions_bucket()
    # The package is content-addressed: its object name is the SHA-256 of the zip deployed.
    objects = {b.name for b in sandbox.storage().list_blobs(_name(w).functions_bucket())}
    assert dispatcher.build_config.source.storage_source.object_ in objects
    functions = [r for r in w.plan.resources if r.kind == "cloud-function"]
    assert len(objects) == len(functions) == 9, objects  # one package per function (a processor per device)


def test_a_firestore_ensure_reads_its_owner_document_once(deployed: Walker, sandbox: SandboxHandle) -> None:
    """The owner check and the adoption step share one read of the owner document."""
    rid = next(r.id for r in deployed.plan.resources if r.kind == "firestore")
    mark = sandbox.seq()
    assert deployed.ensure(rid).action == "unchanged"
    owner_reads = [r for r in sandbox.requests(mark) if str(r.get("operation")).endswith(":BatchGetDocuments")]
    assert len(owner_reads) == 1, owner_reads


def test_buckets_are_private_with_their_class_and_grant(deployed: Walker, sandbox: SandboxHandle) -> None:
    naming = _name(deployed)
    runtime = f"serviceAccount:{_email(sandbox, naming.service_account())}"
    for name, storage_class, users in ((naming.functions_bucket(), "STANDARD", set()),
                                       (naming.cold_bucket(), "NEARLINE", {runtime}),
                                       (naming.archive_bucket(), "ARCHIVE", {runtime})):
        bucket = sandbox.storage().get_bucket(name)
        assert bucket.storage_class == storage_class
        assert bucket.iam_configuration.uniform_bucket_level_access_enabled
        assert bucket.iam_configuration.public_access_prevention == "enforced"
        policy = bucket.get_iam_policy(requested_policy_version=3)
        granted = {m for b in policy.bindings if b["role"] == "roles/storage.objectUser" for m in b["members"]}
        assert granted == users, name


def test_firestore_has_its_database_indexes_and_grant(deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.cloud import firestore_admin_v1, resourcemanager_v3

    naming = _name(deployed)
    admin = sandbox.client(firestore_admin_v1.FirestoreAdminClient)
    db = f"projects/{sandbox.project}/databases/{naming.firestore_database()}"
    assert admin.get_database(name=db).type_.name == "FIRESTORE_NATIVE"
    indexes = admin.list_indexes(parent=f"{db}/collectionGroups/{naming.hot_collection()}")
    shapes = {tuple((f.field_path, f.order.name) for f in i.fields if f.field_path != "__name__")
              for i in indexes if i.state.name == "READY"}
    assert shapes == {(("device_id", "ASCENDING"), ("timestamp", "ASCENDING")),
                      (("device_id", "ASCENDING"), ("timestamp", "DESCENDING"))}
    policy = sandbox.client(resourcemanager_v3.ProjectsClient).get_iam_policy(resource=f"projects/{sandbox.project}")
    users = {m for b in policy.bindings if b.role == "roles/datastore.user" for m in b.members}
    assert f"serviceAccount:{_email(sandbox, naming.service_account())}" in users


def _publisher(sandbox: SandboxHandle, key: dict[str, Any]) -> Any:
    from google.oauth2 import service_account
    from google.pubsub_v1.services.publisher import PublisherClient

    return sandbox.client(PublisherClient, service_account.Credentials.from_service_account_info(key))


def test_a_device_key_publishes_to_its_topic_only(deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.api_core import exceptions as gx
    from google.pubsub_v1.services.publisher import PublisherClient

    w = deployed
    device = "soil-probe-1"
    rid = f"gcp/L1/device-{device}"
    credentials = json.loads(w.outputs[rid][device_credentials_output(device)])
    topic = f"projects/{sandbox.project}/topics/{_name(w).telemetry_topic()}"
    assert credentials["topic"] == topic and credentials["device_attribute"] == "deviceId"
    publisher = _publisher(sandbox, credentials["service_account_key"])
    # Not a reading (the dispatcher acknowledges and drops it: nothing is stored while later tests
    # count writes): this test is about who may publish.
    reading = b"not a reading"
    answer = publisher.publish(topic=topic, messages=[{"data": reading}])
    assert len(answer.message_ids) == 1
    other = f"projects/{sandbox.project}/topics/{unique_twin()}-other"
    admin = sandbox.client(PublisherClient)
    admin.create_topic(name=other)
    try:
        with pytest.raises(gx.Forbidden):
            publisher.publish(topic=other, messages=[{"data": reading}])
    finally:
        admin.delete_topic(topic=other)

    # Credentials the control plane no longer has are replaced, and the old key stops working.
    old_key = credentials["service_account_key"]
    w.outputs[rid] = {}
    renewed = w.ensure(rid)
    assert renewed.action == "updated"
    fresh = json.loads(renewed.outputs[device_credentials_output(device)])
    assert fresh["service_account_key"]["private_key_id"] != old_key["private_key_id"]
    account = f"projects/{sandbox.project}/serviceAccounts/{fresh['service_account_key']['client_email']}"
    keys = sandbox.iam().list_service_account_keys(name=account)
    assert [k.name.rsplit("/", 1)[-1] for k in keys.keys] == [fresh["service_account_key"]["private_key_id"]]
    with pytest.raises(gx.Unauthorized):
        _publisher(sandbox, old_key).publish(topic=topic, messages=[{"data": reading}])
    assert len(_publisher(sandbox, fresh["service_account_key"]).publish(
        topic=topic, messages=[{"data": reading}]).message_ids) == 1


def test_a_device_key_reads_its_own_feedback_subscription_only(deployed: Walker, sandbox: SandboxHandle) -> None:
    """Feedback on GCP: published to the feedback topic with the device id attribute (what the
    functions' account may do), it reaches the device's own filtered subscription, which only that
    device's key may pull."""
    from google.api_core import exceptions as gx
    from google.oauth2 import service_account
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.subscriber import SubscriberClient

    w, naming = deployed, _name(deployed)
    devices = sorted(r.config.device_id for r in w.plan.resources if r.kind == "iot-device")
    assert len(devices) >= 2
    mine, other = devices[0], devices[1]
    credentials = json.loads(w.outputs[f"gcp/L1/device-{mine}"][device_credentials_output(mine)])
    subscription = f"projects/{sandbox.project}/subscriptions/{naming.feedback_subscription(mine)}"
    assert credentials["feedback_subscription"] == subscription
    topic = f"projects/{sandbox.project}/topics/{naming.feedback_topic()}"
    admin = sandbox.client(PublisherClient)
    publishers = {m for b in admin.get_iam_policy(request={"resource": topic}).bindings
                  if b.role == "roles/pubsub.publisher" for m in b.members}
    assert publishers == {f"serviceAccount:{_email(sandbox, naming.service_account())}"}
    admin.publish(topic=topic, messages=[{"data": b'{"payload":"for-mine"}', "attributes": {"deviceId": mine}},
                                         {"data": b'{"payload":"for-other"}', "attributes": {"deviceId": other}}])
    device = sandbox.client(SubscriberClient, service_account.Credentials.from_service_account_info(
        credentials["service_account_key"]))
    pulled = device.pull(request={"subscription": subscription, "max_messages": 10}).received_messages
    assert [m.message.data for m in pulled] == [b'{"payload":"for-mine"}']
    device.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in pulled]})
    theirs = f"projects/{sandbox.project}/subscriptions/{naming.feedback_subscription(other)}"
    with pytest.raises(gx.Forbidden):
        device.pull(request={"subscription": theirs, "max_messages": 10})
    drained = sandbox.client(SubscriberClient).pull(request={"subscription": theirs, "max_messages": 10})
    assert [m.message.data for m in drained.received_messages] == [b'{"payload":"for-other"}']
    sandbox.client(SubscriberClient).acknowledge(request={
        "subscription": theirs, "ack_ids": [m.ack_id for m in drained.received_messages]})


def test_scheduler_jobs_call_their_mover_as_the_twin_account(deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.cloud import scheduler_v1

    w, naming = deployed, _name(deployed)
    mover = _function(sandbox, w, Function.HOT_TO_COLD_MOVER)
    region = mover.name.split("/")[3]
    job = sandbox.client(scheduler_v1.CloudSchedulerClient).get_job(
        name=f"projects/{sandbox.project}/locations/{region}/jobs/{naming.schedule(str(Function.HOT_TO_COLD_MOVER))}")
    assert job.schedule == w.plan.resource("gcp/L3_hot/hot-to-cold-mover-schedule").config.cron
    assert job.time_zone == "Etc/UTC" and job.state.name == "ENABLED"
    assert job.http_target.uri == mover.service_config.uri
    assert job.http_target.oidc_token.service_account_email == _email(sandbox, naming.service_account())
    outcome = sandbox.sb.gcp.run_job(job.name)
    assert outcome.get("status") == 200, outcome  # admitted by the door, the mover found nothing to move


def test_settings_are_read_modify_written_once(deployed: Walker, sandbox: SandboxHandle) -> None:
    w = deployed
    rid = f"gcp/L2/{Function.PERSISTER}"
    url = "https://pusher.example.net/api/adt-pusher"
    mark, polls = sandbox.seq(), w.settings_polls
    assert w.apply_settings(rid, {Setting.REMOTE_ADT_PUSHER_URL: url}) is True
    assert sandbox.writes(mark) == ["cloudfunctions:UpdateFunction"]
    assert w.settings_polls > polls  # the new revision was polled until it served, outside the first call
    env = dict(_function(sandbox, w, Function.PERSISTER).service_config.environment_variables)
    assert env[Setting.REMOTE_ADT_PUSHER_URL] == url and Setting.DIGITAL_TWIN_INFO in env  # others kept
    mark, polls = sandbox.seq(), w.settings_polls
    assert w.apply_settings(rid, {Setting.REMOTE_ADT_PUSHER_URL: url}) is False
    assert sandbox.writes(mark) == [] and w.settings_polls == polls
    assert w.apply_settings(rid, {Setting.REMOTE_ADT_PUSHER_URL: None}) is True
    assert Setting.REMOTE_ADT_PUSHER_URL not in _function(sandbox, w, Function.PERSISTER).service_config.environment_variables


def test_a_change_made_elsewhere_is_put_back(deployed: Walker, sandbox: SandboxHandle) -> None:
    from google.cloud import functions_v2
    from google.protobuf import field_mask_pb2

    w = deployed
    fn = _function(sandbox, w, Function.EVENT_CHECKER)
    env = dict(fn.service_config.environment_variables)
    env.pop(Setting.EVENT_RULES)
    client = sandbox.client(functions_v2.FunctionServiceClient)
    client.update_function(function=functions_v2.Function(name=fn.name, service_config={"environment_variables": env}),
                           update_mask=field_mask_pb2.FieldMask(paths=["service_config.environment_variables"])).result(60)
    mark = sandbox.seq()
    assert w.ensure(f"gcp/L2/{Function.EVENT_CHECKER}").action == "updated"
    assert sandbox.writes(mark) == ["cloudfunctions:UpdateFunction"]
    assert Setting.EVENT_RULES in _function(sandbox, w, Function.EVENT_CHECKER).service_config.environment_variables


def test_settings_whose_revision_keeps_failing_stop_after_three_deploys(deployed: Walker,
                                                                       sandbox: SandboxHandle) -> None:
    """A settings revision that fails (here: the function's service account is gone) is written
    again, and after `MAX_DEPLOY_ATTEMPTS` the apply fails permanently, naming Google's reason."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud import functions_v2
    from google.protobuf import field_mask_pb2

    from activities.providers.gcp.cloud_function import MAX_DEPLOY_ATTEMPTS
    from shared.engine.errors import PermanentError

    w = deployed
    rid = f"gcp/L2/{Function.PERSISTER}"
    fn = _function(sandbox, w, Function.PERSISTER)
    client = sandbox.client(functions_v2.FunctionServiceClient)
    mask = field_mask_pb2.FieldMask(paths=["service_config.service_account_email"])

    def with_account(email: str) -> Any:
        return client.update_function(
            function=functions_v2.Function(name=fn.name, service_config={"service_account_email": email}),
            update_mask=mask)

    with pytest.raises(GoogleAPICallError):
        with_account(f"gone@{sandbox.project}.iam.gserviceaccount.com").result(60)
    mark = sandbox.seq()
    with pytest.raises(PermanentError, match=f"failed to deploy {MAX_DEPLOY_ATTEMPTS} times .*does not exist"):
        w.apply_settings(rid, {Setting.REMOTE_ADT_PUSHER_URL: "https://pusher.example.net/api/adt-pusher"})
    assert sandbox.writes(mark) == ["cloudfunctions:UpdateFunction"] * MAX_DEPLOY_ATTEMPTS
    with_account(fn.service_config.service_account_email).result(60)
    assert _function(sandbox, w, Function.PERSISTER).state == functions_v2.Function.State.ACTIVE


def test_a_function_package_is_built_once_per_configuration(
    deployed: Walker, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Polls of a deploy (DEPLOYING, then ACTIVE) reuse the package the create built: one build
    for the create and every poll, none for a re-run with the same configuration."""
    import payload_functions.packaging as packaging
    from activities import packages

    w = deployed
    rid = next(r.id for r in w.plan.resources if r.kind == "cloud-function" and r.id.endswith(f"/{Function.HOT_READER}"))
    assert w.delete(rid).action == "deleted"
    builds: list[str] = []
    real = packaging.build_for_resource

    def counted(*args: Any, **kwargs: Any) -> Any:
        builds.append(str(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(packaging, "build_for_resource", counted)
    monkeypatch.setattr(packages, "_built", {})
    mark = sandbox.seq()
    assert w.ensure(rid).action == "created"
    reads = [r for r in sandbox.requests(mark) if r.get("operation") == "cloudfunctions:GetFunction"]
    assert len(reads) >= 3, reads  # the ensure's, the create's converge and at least one poll after it
    assert len(builds) == 1, builds
    assert w.ensure(rid).action == "unchanged"
    assert len(builds) == 1, builds


def test_destroy_leaves_nothing_of_the_twin(deployed: Walker, sandbox: SandboxHandle) -> None:
    """Runs last in this module: it deletes the module's deployment."""
    w = deployed
    results = w.delete_all()
    assert {results[rid].action for rid in results if rid.startswith("gcp/")} == {"deleted"}
    assert sandbox.twin_resources(w.twin) == [], sandbox.twin_resources(w.twin)
    again = w.delete_all()
    assert {rid: r.action for rid, r in again.items() if r.action != "absent" and rid.startswith("gcp/")} == {}


def test_a_twin_name_is_refused_where_gcp_ids_cannot_hold_it() -> None:
    """Every GCP id the plan makes is valid for a twin of any allowed length."""
    from shared.naming import GcpNaming

    for twin in ("a", "ab", "a" * 41, "Greenhouse-X"):
        naming = GcpNaming(twin)
        for name, rule in naming.all_names():
            assert rule.problems(name) == [], (twin, name)
        assert 6 <= len(naming.device_account("x" * 64)) <= 30
    assert GcpNaming("g1").device_account("a_b") != GcpNaming("g1").device_account("a-b")
    assert unique_twin() != unique_twin()
