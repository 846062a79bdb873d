"""Cloud Functions v2 in the sandbox, through the official clients: source upload, create as an LRO
polled to `.result()`, the deployed code running under functions-framework, a message published
to a topic reaching a Pub/Sub-triggered function that writes to Firestore, an HTTP function at its
`uri` (opened by `roles/run.invoker` for allUsers on its Cloud Run service) reading it back, a
Cloud Scheduler job run on demand calling it, an environment patch restarting it, and delete."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gx
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore_admin_v1, functions_v2, pubsub_v1, run_v2, scheduler_v1
from google.cloud.firestore_admin_v1.types import database as database_types
from google.iam.v1 import iam_policy_pb2, policy_pb2

from sandbox.core.profiles import Profile
from sandbox.server import Sandbox

pytestmark = pytest.mark.slow

MAIN_PY = '''
import base64, json, os
import functions_framework
from google.cloud import firestore

@functions_framework.cloud_event
def on_telemetry(event):
    reading = json.loads(base64.b64decode(event.data["message"]["data"]))
    reading["source"] = event["source"]
    firestore.Client().collection("readings").document(reading["id"]).set(reading)

@functions_framework.http
def read(request):
    if request.headers.get("X-CloudScheduler") == "true":
        return {"scheduled": True, "job": request.headers.get("X-CloudScheduler-JobName"),
                "body": request.get_data(as_text=True)}
    doc = firestore.Client().collection("readings").document(request.args["id"]).get()
    return {"greeting": os.environ.get("GREETING"), "found": doc.exists, "reading": doc.to_dict()}
'''


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("gcp-functions"), with_aws=False, with_blob=False, with_function_apps=False)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def _opts(sb: Sandbox) -> dict[str, Any]:
    return {"transport": "rest", "credentials": AnonymousCredentials(),
            "client_options": {"api_endpoint": sb.endpoints["gcp"]["api_endpoint"]}}


def _source() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", MAIN_PY)
        zf.writestr("requirements.txt", "functions-framework\ngoogle-cloud-firestore\n")
    return buf.getvalue()


def _upload(fns: functions_v2.FunctionServiceClient, location: str) -> Any:
    upload = fns.generate_upload_url(request={"parent": location})
    forged = upload.upload_url.split("?")[0] + "?Signature=forged"
    assert requests.put(forged, data=b"nope", timeout=10).status_code == 403
    put = requests.put(upload.upload_url, data=_source(), headers={"Content-Type": "application/zip"}, timeout=10)
    assert put.status_code == 200, put.text
    return upload.storage_source


def _wait_json(url: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        r = requests.get(url, timeout=10)
        last = (r.status_code, r.text)
        if r.status_code == 200 and predicate(r.json()):
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"{url}: condition not met; last answer {last}")


def test_published_message_reaches_function_that_writes_firestore_read_back_over_http(gcp: Sandbox) -> None:
    g = gcp.endpoints["gcp"]
    project, location = g["project_id"], f"projects/{g['project_id']}/locations/{g['region']}"
    admin = firestore_admin_v1.FirestoreAdminClient(**_opts(gcp))
    admin.create_database(parent=f"projects/{project}", database_id="(default)", database=database_types.Database(
        location_id=g["region"], type_=database_types.Database.DatabaseType.FIRESTORE_NATIVE)).result(timeout=30)
    publisher = pubsub_v1.PublisherClient(**_opts(gcp))
    topic = publisher.create_topic(name=f"projects/{project}/topics/telemetry").name
    fns = functions_v2.FunctionServiceClient(**_opts(gcp))
    source = _upload(fns, location)

    def function(entry: str, **extra: Any) -> functions_v2.Function:
        return functions_v2.Function(
            build_config=functions_v2.BuildConfig(runtime="python312", entry_point=entry,
                                                  source=functions_v2.Source(storage_source=source)),
            service_config=functions_v2.ServiceConfig(environment_variables={"GREETING": "hello"},
                                                      ingress_settings=functions_v2.ServiceConfig.IngressSettings.ALLOW_ALL),
            **extra)

    writer_op = fns.create_function(parent=location, function_id="ingest", function=function(
        "on_telemetry", event_trigger=functions_v2.EventTrigger(
            event_type="google.cloud.pubsub.topic.v1.messagePublished", pubsub_topic=topic,
            retry_policy=functions_v2.EventTrigger.RetryPolicy.RETRY_POLICY_RETRY)))
    reader_op = fns.create_function(parent=location, function_id="reader", function=function("read"))
    writer = writer_op.result(timeout=90)
    reader = reader_op.result(timeout=90)
    assert writer.state == functions_v2.Function.State.ACTIVE and reader.state == functions_v2.Function.State.ACTIVE
    assert writer.event_trigger.trigger and writer.environment == functions_v2.Environment.GEN_2
    uri = reader.service_config.uri
    assert uri.startswith("http://127.0.0.1:") and reader.url == uri

    # Closed until allUsers holds roles/run.invoker on the Cloud Run service, as on Google Cloud.
    assert requests.get(uri, params={"id": "x"}, timeout=10).status_code == 403
    run = run_v2.ServicesClient(**_opts(gcp))
    current = run.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=reader.service_config.service))
    run.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(
        resource=reader.service_config.service, policy=policy_pb2.Policy(
            etag=current.etag, bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"])])))

    publisher.publish(topic, json.dumps({"id": "d1_1", "deviceId": "d1", "temp": 21.5}).encode()).result(timeout=30)
    answer = _wait_json(f"{uri}?id=d1_1", lambda body: body["found"])
    assert answer["reading"] == {"id": "d1_1", "deviceId": "d1", "temp": 21.5,
                                 "source": f"//pubsub.googleapis.com/{topic}"}
    assert answer["greeting"] == "hello"

    # A scheduler job run on demand calls the HTTP function (with an ID token for its account).
    scheduler = scheduler_v1.CloudSchedulerClient(**_opts(gcp))
    job = scheduler.create_job(parent=location, job=scheduler_v1.Job(
        name=f"{location}/jobs/daily-mover", schedule="0 3 * * *", time_zone="Etc/UTC",
        http_target=scheduler_v1.HttpTarget(uri=uri + "/run", http_method=scheduler_v1.HttpMethod.POST,
                                            body=b'{"tier":"cold"}', headers={"Content-Type": "application/json"},
                                            oidc_token=scheduler_v1.OidcToken(
                                                service_account_email=f"{g['project_number']}-compute@developer."
                                                                      "gserviceaccount.com"))))
    scheduler.run_job(name=job.name)
    deadline = time.monotonic() + 20
    while not scheduler.get_job(name=job.name).last_attempt_time and time.monotonic() < deadline:
        time.sleep(0.1)
    after = scheduler.get_job(name=job.name)
    assert after.last_attempt_time and after.status.code == 0
    outcome = requests.post(f"{gcp.control_url}/gcp/jobs/daily-mover/run", timeout=30).json()
    assert outcome["ok"] and json.loads(outcome["body"]) == {"scheduled": True, "job": "daily-mover",
                                                             "body": '{"tier":"cold"}'}

    # Patching the environment deploys a new revision: the running code sees the new value.
    patched = fns.update_function(function=functions_v2.Function(
        name=reader.name, service_config=functions_v2.ServiceConfig(environment_variables={"GREETING": "bye"})),
        update_mask={"paths": ["service_config.environment_variables"]}).result(timeout=90)
    assert patched.service_config.revision != reader.service_config.revision
    assert patched.service_config.uri == uri
    assert _wait_json(f"{uri}?id=d1_1", lambda body: True)["greeting"] == "bye"

    # A duplicate create is reported by its operation; delete is an operation too.
    with pytest.raises(gx.Conflict):
        fns.create_function(parent=location, function_id="reader", function=function("read")).result(timeout=30)
    fns.delete_function(name=reader.name).result(timeout=60)
    with pytest.raises(gx.NotFound):
        fns.get_function(name=reader.name)
    assert [f.name for f in fns.list_functions(parent=location)] == [writer.name]
    log = requests.get(f"{gcp.control_url}/requests", params={"cloud": "gcp"}, timeout=10).json()
    ops = {r["operation"] for r in log}
    assert {"cloudfunctions:CreateFunction", "cloudfunctions:GetOperation", "run:SetIamPolicy", "pubsub:Publish",
            "cloudscheduler:RunJob", "firestore:Commit", "run:Invoke"} <= ops
    assert all(r["mutating"] is False for r in log if r["operation"] in ("cloudfunctions:GetOperation", "run:Invoke"))
    uploads = [r["url"] for r in log if r["operation"] == "storage:xml.putObject"]
    assert uploads and all("Signature=REDACTED" in url for url in uploads)  # the signed URL's secret stays out
    resources = requests.get(f"{gcp.control_url}/resources", timeout=10).json()["gcp"]
    assert any(r["type"] == "cloudfunctions.function" and r["name"] == writer.name for r in resources)


def test_flaky_deploy_fails_once_then_an_update_deploys_it(gcp: Sandbox) -> None:
    g = gcp.endpoints["gcp"]
    location = f"projects/{g['project_id']}/locations/{g['region']}"
    fns = functions_v2.FunctionServiceClient(**_opts(gcp))
    source = _upload(fns, location)
    gcp.ctx.faults.profile = Profile("fail-every-lro-once", lro_fail_once_rate=1.0)
    try:
        fn = functions_v2.Function(build_config=functions_v2.BuildConfig(
            runtime="python312", entry_point="read", source=functions_v2.Source(storage_source=source)))
        with pytest.raises(gx.InternalServerError):
            fns.create_function(parent=location, function_id="flaky", function=fn).result(timeout=60)
        failed = fns.get_function(name=f"{location}/functions/flaky")
        assert failed.state == functions_v2.Function.State.FAILED and failed.state_messages
        # The retry (an update of the failed function) succeeds: the fault struck once.
        done = fns.update_function(function=functions_v2.Function(name=failed.name, build_config=fn.build_config),
                                   ).result(timeout=90)
        assert done.state == functions_v2.Function.State.ACTIVE
    finally:
        gcp.ctx.faults.set_profile("instant")
    fns.delete_function(name=f"{location}/functions/flaky").result(timeout=60)


def test_deployed_code_that_does_not_start_fails_the_operation(gcp: Sandbox, tmp_path: Path) -> None:
    g = gcp.endpoints["gcp"]
    location = f"projects/{g['project_id']}/locations/{g['region']}"
    fns = functions_v2.FunctionServiceClient(**_opts(gcp))
    source = _upload(fns, location)
    fn = functions_v2.Function(build_config=functions_v2.BuildConfig(
        runtime="python312", entry_point="no_such_function", source=functions_v2.Source(storage_source=source)))
    with pytest.raises(gx.GoogleAPICallError) as err:
        fns.create_function(parent=location, function_id="broken", function=fn).result(timeout=90)
    assert "no_such_function" in str(err.value) or "failed to start" in str(err.value)
    assert os.environ.get("FIRESTORE_EMULATOR_HOST") is None  # the sandbox never sets it in this process


# --- the revision's port and identity -------------------------------------------------------------

TAKER = '''
import http.server, os, sys
argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
if port:
    # Another process takes the port the runner handed over before the revision can bind it.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        server.serve_forever()
    server.server_close()
    with open(os.environ["DECOY_PIDS"], "a") as out:
        out.write(f"{pid}\\n")
os.execv(sys.executable, [sys.executable, *argv])
'''


def test_a_revision_serves_on_the_port_its_own_server_bound(tmp_path: Path) -> None:
    """Regression: the runner picked a free port, closed it and handed it to the revision; on a busy
    machine another process could take it first, the readiness probe was answered by that process,
    the revision died on "Address already in use" and its front door answered 503. Here a wrapper
    of the interpreter plays that other process: it takes any port passed with `--port`."""
    import asyncio
    import contextlib
    import signal

    from sandbox.runtime.gcp_functions import GcpFunctionRunner, RevisionSpec

    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!{__import__('sys').executable}\n{TAKER}")
    wrapper.chmod(0o755)
    source = io.BytesIO()
    with zipfile.ZipFile(source, "w") as zf:
        zf.writestr("main.py", "import functions_framework\n\n@functions_framework.http\n"
                               "def hello(request):\n    return 'hello from the revision'\n")
    decoys = tmp_path / "decoys"
    spec = RevisionSpec(function="projects/p/locations/l/functions/hello", service="hello", revision="hello-00001-abc",
                        source_zip=source.getvalue(), entry_point="hello", signature_type="http", environment=(),
                        timeout_seconds=60, sandbox_env=(("DECOY_PIDS", str(decoys)),))

    async def deploy_and_call() -> tuple[str, str]:
        runner = GcpFunctionRunner(tmp_path / "functions", python=str(wrapper))
        try:
            url = await runner.deploy(spec)
            answer = await asyncio.get_running_loop().run_in_executor(
                None, lambda: requests.get(url, timeout=10).text)
            return url, answer
        finally:
            await runner.close()

    try:
        url, answer = asyncio.run(deploy_and_call())
    finally:
        for pid in (decoys.read_text().split() if decoys.is_file() else []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert answer == "hello from the revision", (url, answer[:200])


def test_deployed_code_gets_id_tokens_from_its_metadata_server(gcp: Sandbox) -> None:
    """google-auth's standard lookup (no key file) finds the function's metadata server and gets an
    ID token naming the function's runtime service account, for the audience asked."""
    g = gcp.endpoints["gcp"]
    project, location = g["project_id"], f"projects/{g['project_id']}/locations/us-central1"
    fns = functions_v2.FunctionServiceClient(**_opts(gcp))
    source = io.BytesIO()
    with zipfile.ZipFile(source, "w") as zf:
        zf.writestr("main.py", "import functions_framework, google.auth.transport.requests, google.oauth2.id_token\n"
                               "import base64, json\n\n@functions_framework.http\ndef whoami(request):\n"
                               "    token = google.oauth2.id_token.fetch_id_token(\n"
                               "        google.auth.transport.requests.Request(), request.args['aud'])\n"
                               "    body = token.split('.')[1]\n"
                               "    return json.loads(base64.urlsafe_b64decode(body + '=' * (-len(body) % 4)))\n")
    upload = fns.generate_upload_url(request={"parent": location})
    assert requests.put(upload.upload_url, data=source.getvalue(), timeout=10).status_code == 200
    import grpc
    from google.cloud import iam_admin_v1
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

    iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=grpc.insecure_channel(g["grpc_host"])))
    account = iam.create_service_account(request={"name": f"projects/{project}", "account_id": "whoami-runtime"})
    fn = fns.create_function(request={"parent": location, "function_id": "whoami", "function": {
        "build_config": {"runtime": "python311", "entry_point": "whoami", "source": {"storage_source": upload.storage_source}},
        "service_config": {"service_account_email": account.email}}}).result(timeout=120)
    run = run_v2.ServicesClient(**_opts(gcp))
    run.set_iam_policy(request={"resource": fn.service_config.service, "policy": policy_pb2.Policy(
        bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"])])})
    claims = _wait_json(f"{fn.service_config.uri}/?aud=https://callee.example", lambda body: "email" in body)
    assert claims["email"] == account.email and claims["aud"] == "https://callee.example"
    fns.delete_function(name=fn.name).result(timeout=60)
