"""The GCP sandbox's services through the official Google clients: Pub/Sub (REST and gRPC, push with
retry), Firestore (gRPC data plane, Admin LROs, indexes), Cloud Storage (classes, preconditions, a
429 the client retries), Cloud Scheduler, IAM and Resource Manager (404 / 409 error classes)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions as gx
from google.auth.credentials import AnonymousCredentials
from google.cloud import (
    firestore,
    firestore_admin_v1,
    iam_admin_v1,
    pubsub_v1,
    resourcemanager_v3,
    scheduler_v1,
)
from google.cloud import storage as gcs
from google.cloud.firestore_admin_v1.types import database as database_types
from google.cloud.firestore_admin_v1.types import index as index_types
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from google.iam.v1 import policy_pb2
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from googleapiclient import discovery, errors

from sandbox.core.profiles import Profile
from sandbox.server import Sandbox


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("gcp-services"), with_aws=False, with_blob=False, with_function_apps=False)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def env(gcp: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    g = gcp.endpoints["gcp"]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", g["firestore_emulator_host"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", g["storage_emulator_host"])
    return dict(g)


def _rest(g: dict[str, Any]) -> dict[str, Any]:
    return {"transport": "rest", "credentials": AnonymousCredentials(),
            "client_options": {"api_endpoint": g["api_endpoint"]}}


class _Receiver:
    """A push endpoint that fails its first `failures` deliveries, then acknowledges."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if len(receiver.statuses) < receiver.failures else 204
                receiver.statuses.append(status)
                if status == 204:
                    receiver.bodies.append(body)
                    receiver.got.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_pubsub_rest_and_grpc_share_state_and_push_retries_until_acknowledged(gcp: Sandbox, env: dict[str, Any]) -> None:
    project = env["project_id"]
    rest = pubsub_v1.PublisherClient(**_rest(env))
    topic = rest.create_topic(request={"name": f"projects/{project}/topics/orders", "labels": {"app": "iot"}}).name
    with pytest.raises(gx.Conflict):
        rest.create_topic(name=topic)
    with pytest.raises(gx.NotFound):
        rest.get_topic(topic=f"projects/{project}/topics/missing")
    # The same topic over gRPC (PUBSUB_EMULATOR_HOST: an insecure channel, no credentials).
    channel = grpc.insecure_channel(env["pubsub_emulator_host"])
    over_grpc = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    assert over_grpc.get_topic(topic=topic).labels["app"] == "iot"
    receiver = _Receiver(failures=2)
    try:
        subscriber = pubsub_v1.SubscriberClient(**_rest(env))
        sub = subscriber.create_subscription(request={
            "name": f"projects/{project}/subscriptions/orders-push", "topic": topic,
            "push_config": {"push_endpoint": receiver.url},
            "retry_policy": {"minimum_backoff": {"nanos": 100_000_000}, "maximum_backoff": {"seconds": 1}}})
        assert sub.ack_deadline_seconds == 10 and sub.state == pubsub_v1.types.Subscription.State.ACTIVE
        message_id = over_grpc.publish(topic, b'{"n": 1}', deviceId="d1").result(timeout=30)
        assert receiver.got.wait(20), receiver.statuses
        assert receiver.statuses == [503, 503, 204]  # at least once: retried with backoff until acked
        delivered = receiver.bodies[0]
        assert delivered["subscription"] == sub.name and delivered["message"]["messageId"] == message_id
        assert delivered["message"]["attributes"] == {"deviceId": "d1"}
        # Pull subscriptions keep messages for Pull / Acknowledge.
        pull = subscriber.create_subscription(name=f"projects/{project}/subscriptions/orders-pull", topic=topic)
        rest.publish(topic, b"two").result(timeout=30)
        got = subscriber.pull(subscription=pull.name, max_messages=5)
        assert [m.message.data for m in got.received_messages] == [b"two"]
        subscriber.acknowledge(subscription=pull.name, ack_ids=[got.received_messages[0].ack_id])
        subscriber.delete_subscription(subscription=pull.name)
        with pytest.raises(gx.NotFound):
            subscriber.get_subscription(subscription=pull.name)
    finally:
        receiver.close()


def test_firestore_data_plane_with_admin_database_and_composite_index(gcp: Sandbox, env: dict[str, Any]) -> None:
    project = env["project_id"]
    db = firestore.Client(project=project)
    with pytest.raises(gx.NotFound):  # no database until the Admin API creates it, as on Google Cloud
        db.collection("readings").document("x").get()
    admin = firestore_admin_v1.FirestoreAdminClient(**_rest(env))
    parent = f"projects/{project}/databases/(default)"
    admin.create_database(parent=f"projects/{project}", database_id="(default)", database=database_types.Database(
        location_id="us-central1", type_=database_types.Database.DatabaseType.FIRESTORE_NATIVE)).result(timeout=30)
    readings = db.collection("readings")
    batch = db.batch()
    for device in ("d1", "d2"):
        for ts in range(1, 6):
            batch.set(readings.document(f"{device}_{ts}"), {"deviceId": device, "ts": ts, "temp": 20.0 + ts})
    batch.commit()
    query = (readings.where(filter=firestore.FieldFilter("deviceId", "==", "d1"))
             .where(filter=firestore.FieldFilter("ts", ">=", 2)).order_by("ts", direction=firestore.Query.DESCENDING))
    with pytest.raises(gx.FailedPrecondition, match="requires an index"):
        list(query.stream())
    index = admin.create_index(parent=f"{parent}/collectionGroups/readings", index=index_types.Index(
        query_scope=index_types.Index.QueryScope.COLLECTION,
        fields=[index_types.Index.IndexField(field_path="deviceId", order=index_types.Index.IndexField.Order.ASCENDING),
                index_types.Index.IndexField(field_path="ts", order=index_types.Index.IndexField.Order.DESCENDING)],
    )).result(timeout=30)
    assert index.state == index_types.Index.State.READY
    assert [d.id for d in query.limit(3).stream()] == ["d1_5", "d1_4", "d1_3"]
    page2 = query.start_after({"ts": 4}).limit(2)
    assert [d.id for d in page2.stream()] == ["d1_3", "d1_2"]
    assert query.count().get()[0][0].value == 4
    doc = readings.document("d1_1")
    with pytest.raises(gx.Conflict):  # create() on an existing document: ALREADY_EXISTS
        doc.create({"deviceId": "d1"})
    doc.update({"temp": firestore.Increment(5), "seen": firestore.SERVER_TIMESTAMP})
    assert doc.get().get("temp") == 26.0
    with pytest.raises(gx.NotFound):
        readings.document("nope").update({"temp": 1})
    doc.delete()
    assert not doc.get().exists
    assert len(list(readings.list_documents())) == 9


def test_storage_classes_preconditions_and_a_retried_429(gcp: Sandbox, env: dict[str, Any]) -> None:
    client = gcs.Client(project=env["project_id"], credentials=AnonymousCredentials())
    bucket = client.bucket("twin-cold")
    bucket.storage_class = "COLDLINE"
    bucket = client.create_bucket(bucket, location="us-central1")
    assert (bucket.storage_class, bucket.location) == ("COLDLINE", "US-CENTRAL1")
    assert client.get_bucket("twin-cold").storage_class == "COLDLINE"
    with pytest.raises(gx.Conflict):
        client.create_bucket("twin-cold")
    blob = bucket.blob("d1/2024-05-01.ndjson")
    blob.upload_from_string(b'{"ts":1}\n', if_generation_match=0)
    blob.reload()
    assert blob.storage_class == "COLDLINE"  # a new object takes its bucket's default class
    with pytest.raises(gx.PreconditionFailed):
        blob.upload_from_string(b"overwrite", if_generation_match=0)
    blob.update_storage_class("ARCHIVE")
    assert bucket.get_blob("d1/2024-05-01.ndjson").storage_class == "ARCHIVE"
    with pytest.raises(gx.NotFound):
        bucket.blob("missing").download_as_bytes()
    # Half of all calls throttled: the storage client's default retry rides the 429s out.
    seq = gcp.ctx.request_log.last_seq()
    gcp.ctx.faults.profile = Profile("throttle-half", throttle_rate=0.5)
    try:
        for i in range(4):
            bucket.blob(f"d2/{i}.ndjson").upload_from_string(b"x")
    finally:
        gcp.ctx.faults.set_profile("instant")
    statuses = [r.status for r in gcp.ctx.request_log.since(seq) if r.cloud == "gcp"]
    assert 429 in statuses and statuses.count(200) >= 4
    assert len(list(client.list_blobs("twin-cold", prefix="d2/"))) == 4


def test_scheduler_iam_and_resource_manager_errors_and_etags(gcp: Sandbox, env: dict[str, Any]) -> None:
    project = env["project_id"]
    location = f"projects/{project}/locations/us-central1"
    scheduler = scheduler_v1.CloudSchedulerClient(**_rest(env))
    job = scheduler_v1.Job(name=f"{location}/jobs/nightly", schedule="30 4 * * *", time_zone="Europe/Berlin",
                           http_target=scheduler_v1.HttpTarget(uri="http://127.0.0.1:9/x"))
    created = scheduler.create_job(parent=location, job=job)
    assert created.state == scheduler_v1.Job.State.ENABLED and created.schedule_time
    with pytest.raises(gx.Conflict):
        scheduler.create_job(parent=location, job=job)
    with pytest.raises(gx.BadRequest):  # REST maps by HTTP status: 400 is BadRequest
        scheduler.create_job(parent=location, job=scheduler_v1.Job(
            name=f"{location}/jobs/bad", schedule="every day", http_target=job.http_target))
    updated = scheduler.update_job(job=scheduler_v1.Job(name=created.name, schedule="0 5 * * *"),
                                   update_mask={"paths": ["schedule"]})
    assert updated.schedule == "0 5 * * *" and updated.time_zone == "Europe/Berlin"
    assert scheduler.pause_job(name=created.name).state == scheduler_v1.Job.State.PAUSED
    scheduler.delete_job(name=created.name)
    with pytest.raises(gx.NotFound):
        scheduler.get_job(name=created.name)

    # Service accounts over gRPC (IAMClient has no REST transport) and over REST (discovery).
    iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=grpc.insecure_channel(env["grpc_host"])))
    sa = iam.create_service_account(name=f"projects/{project}", account_id="telemetry-fn",
                                    service_account=iam_admin_v1.ServiceAccount(display_name="telemetry"))
    assert sa.email == f"telemetry-fn@{project}.iam.gserviceaccount.com"
    with pytest.raises(gx.AlreadyExists):
        iam.create_service_account(name=f"projects/{project}", account_id="telemetry-fn")
    rest_iam = discovery.build("iam", "v1", credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": env["api_endpoint"]}, static_discovery=True)
    got = rest_iam.projects().serviceAccounts().get(name=f"projects/-/serviceAccounts/{sa.email}").execute()
    assert got["displayName"] == "telemetry"
    rest_iam.projects().serviceAccounts().delete(name=f"projects/{project}/serviceAccounts/{sa.email}").execute()
    with pytest.raises(errors.HttpError) as missing:
        rest_iam.projects().serviceAccounts().get(name=f"projects/{project}/serviceAccounts/{sa.email}").execute()
    assert missing.value.resp.status == 404

    # Project IAM policy: read-modify-write with the etag; a stale etag is refused (409).
    crm = resourcemanager_v3.ProjectsClient(**_rest(env))
    policy = crm.get_iam_policy(resource=f"projects/{project}")
    policy.bindings.append(policy_pb2.Binding(role="roles/datastore.user",
                                              members=[f"serviceAccount:x@{project}.iam.gserviceaccount.com"]))
    written = crm.set_iam_policy(request={"resource": f"projects/{project}", "policy": policy})
    assert written.etag != policy.etag
    with pytest.raises(gx.Conflict):
        crm.set_iam_policy(request={"resource": f"projects/{project}", "policy": policy})
    log = requests.get(f"{gcp.control_url}/requests", params={"cloud": "gcp", "mutating": "false"}, timeout=10).json()
    assert {"cloudresourcemanager:GetIamPolicy", "iam:GetServiceAccount"} <= {r["operation"] for r in log}
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == env["firestore_emulator_host"]


def test_service_account_keys_sign_publishes_that_topic_iam_authorises(gcp: Sandbox, env: dict[str, Any]) -> None:
    """A key file from `CreateServiceAccountKey` works as `google.oauth2.service_account` credentials:
    the REST client's self-signed JWT is verified against the key, and Pub/Sub lets its account
    publish only where it holds `roles/pubsub.publisher`; a deleted key's tokens are refused (401)."""
    from google.oauth2 import service_account
    from google.pubsub_v1.services.publisher import PublisherClient

    project = env["project_id"]
    iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=grpc.insecure_channel(env["grpc_host"])))
    account = iam.create_service_account(request={"name": f"projects/{project}", "account_id": "keyed-device"})
    key = iam.create_service_account_key(request={"name": account.name})
    key_file = json.loads(key.private_key_data)
    assert key_file["client_email"] == account.email and key_file["private_key_id"] == key.name.rsplit("/", 1)[-1]
    listed = iam.list_service_account_keys(request={"name": account.name}).keys
    assert [k.name for k in listed] == [key.name] and not listed[0].private_key_data  # returned once only
    admin = PublisherClient(**_rest(env))
    topic = f"projects/{project}/topics/keyed-telemetry"
    admin.create_topic(name=topic)
    device = PublisherClient(**{**_rest(env), "credentials": service_account.Credentials.from_service_account_info(
        key_file)})
    with pytest.raises(gx.Forbidden):
        device.publish(topic=topic, messages=[{"data": b"{}"}])
    policy = admin.get_iam_policy(request={"resource": topic})
    policy.bindings.add(role="roles/pubsub.publisher", members=[f"serviceAccount:{account.email}"])
    admin.set_iam_policy(request={"resource": topic, "policy": policy})
    assert len(device.publish(topic=topic, messages=[{"data": b"{}"}]).message_ids) == 1
    stale = admin.get_iam_policy(request={"resource": topic})
    stale.etag = b"BwYAAAAAAA=="
    with pytest.raises(gx.Conflict):
        admin.set_iam_policy(request={"resource": topic, "policy": stale})
    iam.delete_service_account_key(request={"name": key.name})
    with pytest.raises(gx.Unauthorized):
        device.publish(topic=topic, messages=[{"data": b"{}"}])
    admin.delete_topic(topic=topic)
    iam.delete_service_account(request={"name": account.name})


def test_filtered_subscriptions_and_their_iam_keep_each_device_to_its_own_messages(
    gcp: Sandbox, env: dict[str, Any],
) -> None:
    """A subscription's `filter` lets only matching messages in (a bad filter is INVALID_ARGUMENT,
    and a filter cannot be changed); Pull by a key-signed account needs
    `roles/pubsub.subscriber` on that subscription (or the project): 403 otherwise."""
    from google.oauth2 import service_account
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.subscriber import SubscriberClient

    project = env["project_id"]
    iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=grpc.insecure_channel(env["grpc_host"])))
    account = iam.create_service_account(request={"name": f"projects/{project}", "account_id": "feedback-reader"})
    key_file = json.loads(iam.create_service_account_key(request={"name": account.name}).private_key_data)
    publisher, admin = PublisherClient(**_rest(env)), SubscriberClient(**_rest(env))
    topic = f"projects/{project}/topics/filtered-feedback"
    publisher.create_topic(name=topic)
    mine, theirs = (f"projects/{project}/subscriptions/filtered-{d}" for d in ("d1", "d2"))
    with pytest.raises(gx.BadRequest, match="filter"):
        admin.create_subscription(request={"name": mine, "topic": topic, "filter": 'attributes.deviceId == "d1"'})
    for name, device in ((mine, "d1"), (theirs, "d2")):
        admin.create_subscription(request={"name": name, "topic": topic, "filter": f'attributes.deviceId = "{device}"'})
    publisher.publish(topic=topic, messages=[{"data": b"to-d1", "attributes": {"deviceId": "d1"}},
                                             {"data": b"to-d2", "attributes": {"deviceId": "d2"}},
                                             {"data": b"to-nobody"}])
    device = SubscriberClient(**{**_rest(env), "credentials": service_account.Credentials.from_service_account_info(
        key_file)})
    with pytest.raises(gx.Forbidden):
        device.pull(request={"subscription": mine, "max_messages": 10})
    policy = admin.get_iam_policy(request={"resource": mine})
    policy.bindings.add(role="roles/pubsub.subscriber", members=[f"serviceAccount:{account.email}"])
    admin.set_iam_policy(request={"resource": mine, "policy": policy})
    pulled = device.pull(request={"subscription": mine, "max_messages": 10}).received_messages
    assert [m.message.data for m in pulled] == [b"to-d1"]
    device.acknowledge(request={"subscription": mine, "ack_ids": [m.ack_id for m in pulled]})
    with pytest.raises(gx.Forbidden):  # the grant is on its own subscription only
        device.pull(request={"subscription": theirs, "max_messages": 10})
    assert [m.message.data for m in admin.pull(request={"subscription": theirs, "max_messages": 10}).received_messages] \
        == [b"to-d2"]
    with pytest.raises(gx.BadRequest, match="filter"):
        admin.update_subscription(request={"subscription": {"name": mine, "topic": topic,
                                                            "filter": 'attributes.deviceId = "d2"'},
                                           "update_mask": {"paths": ["filter"]}})
    for name in (mine, theirs):
        admin.delete_subscription(request={"subscription": name})
    publisher.delete_topic(topic=topic)
    iam.delete_service_account(request={"name": account.name})
