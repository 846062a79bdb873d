"""`POST /api/deployments` and `POST /api/plan` with a bundle (`application/zip`), through the local
host with the project's blueprints (the engine tests' fake provider deploys in milliseconds) and
the bundle store on the sandbox's Azurite: an accepted bundle is stored once, content-addressed,
and Durable carries references only; a bad bundle is answered 4xx with its path, and nothing is
stored and nothing deployed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import example_copy, folder_files, make_zip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_helpers import APP, KEY, Engine, engine_environ, free_port, http  # noqa: E402

from activities.bundle_store import PREFIX  # noqa: E402
from local_host import LocalHost  # noqa: E402
from shared.bundle import MAX_BUNDLE_BYTES, load_bundle_folder  # noqa: E402
from shared.contracts import ControlPlaneSetting  # noqa: E402

pytestmark = pytest.mark.slow
TWIN = "digital-twin-xx"


class Api:
    def __init__(self, engine: Engine, container: Any) -> None:
        self.engine = engine
        self.container = container

    def post(self, route: str, raw: bytes, content_type: str = "application/zip") -> tuple[int, Any]:
        reply = http("POST", f"{self.engine.base}/api/{route}", raw=raw,
                     headers={"x-functions-key": KEY, "Content-Type": content_type})
        return reply.status, reply.json() if reply.body[:1] == b"{" else reply.body

    def stored(self) -> list[str]:
        return sorted(b.name for b in self.container.list_blobs(name_starts_with=PREFIX))

    def instances(self) -> list[dict[str, Any]]:
        reply = self.engine.durable("GET", f"instances/?instanceIdPrefix=twin:{TWIN}:")
        return list(reply.json() or [])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from activities.clouds import clouds_from_environ
    from sandbox.server import Sandbox
    from twin_cli.infrastructure import ensure_bundle_container

    tmp = tmp_path_factory.mktemp("bundle-api")
    with Sandbox(tmp / "sandbox", with_aws=False, with_gcp=False, with_function_apps=False) as sandbox:
        clouds = clouds_from_environ({ControlPlaneSetting.SANDBOX_DIR: str(sandbox.state_dir)})
        url = ensure_bundle_container(clouds)
        assert url is not None
        port = free_port()
        environ = {**engine_environ(tmp, port), ControlPlaneSetting.SANDBOX_DIR: str(sandbox.state_dir),
                   ControlPlaneSetting.BUNDLE_CONTAINER_URL: url}
        host = LocalHost(app_dir=APP, state_dir=tmp / "host", port=port, function_key=KEY, environ=environ)
        host.start()
        try:
            engine = Engine(host.base_url, KEY, tmp / "fake.sqlite", tmp / "fake.json", tmp / "events.jsonl")
            yield Api(engine, clouds.blob_container(url))
        finally:
            host.stop()


def _example(tmp_path: Path) -> dict[str, bytes]:
    return folder_files(example_copy(tmp_path))


def test_a_bundle_deploys_stored_once_and_durable_carries_only_references(api: Api, tmp_path: Path) -> None:
    project = example_copy(tmp_path)
    bundle = load_bundle_folder(project)
    # Zipped by another tool (timestamps, folder entries): the same content, the same name.
    status, body = api.post("deployments", make_zip(folder_files(project), dirs=("azure_functions",)))
    assert status == 202, body
    assert api.stored() == [f"{PREFIX}{bundle.sha256}.zip"]
    assert api.engine.wait(body["id"], 120)["runtimeStatus"] == "Completed"
    api.engine.wait_idle(TWIN)
    started = api.engine.durable("GET", f"instances/{body['id']}?showInput=true").json()
    given = started["input"] if isinstance(started["input"], dict) else json.loads(started["input"])
    text = json.dumps(given)
    assert bundle.sha256 in text  # the references...
    assert "OFFSET_C" not in text and "def process" not in text and "lambda_handler(event" not in text  # ...not the code
    # The plan's configuration names each folder by digest.
    user_app = next(r for r in given["plan"]["resources"] if r["id"] == "azure/L2/user-function-app")
    assert {c["name"] for c in user_app["config"]["user_code"]} >= {"temperature-sensor-1", "high-temperature-callback"}
    # Sending it again stores nothing new (same blob, unchanged).
    before = api.container.get_blob_client(f"{PREFIX}{bundle.sha256}.zip").get_blob_properties().etag
    status, again = api.post("deployments", bundle.data)
    assert status == 202, again
    assert api.engine.wait(again["id"], 120)["runtimeStatus"] == "Completed"
    api.engine.wait_idle(TWIN)
    assert api.container.get_blob_client(f"{PREFIX}{bundle.sha256}.zip").get_blob_properties().etag == before


def test_plan_takes_a_bundle_and_stores_nothing(api: Api, tmp_path: Path) -> None:
    files = _example(tmp_path)
    files["azure_functions/processors/temperature-sensor-1/calibration.py"] += b"# plan only\n"
    before = api.stored()
    status, plan = api.post("plan", make_zip(files))
    assert status == 200, plan
    assert plan["deployable"] is True and any(r["id"] == "azure/L2/user-function-app" for r in plan["resources"])
    assert api.stored() == before


def _bad_bundles(tmp_path: Path) -> list[tuple[str, bytes, int, str, str]]:
    files = _example(tmp_path)
    events = json.loads(files["config_events.json"])
    events[1]["action"]["pathToCode"] = "lambda_functions/event_actions/not-there"
    broken = "azure_functions/processors/temperature-sensor-2/process.py"
    return [
        ("dot-dot", make_zip({**files, "../outside.py": "x = 1\n"}), 400, "../outside.py", "climbs out"),
        ("absolute", make_zip({**files, "/etc/cron.d/x": "x"}), 400, "/etc/cron.d/x", "absolute path"),
        ("link", make_zip(files, links={"azure_functions/processors/pressure-sensor-1/keys": "/root/.ssh"}), 400,
         "azure_functions/processors/pressure-sensor-1/keys", "symbolic link"),
        ("10,000 entries", make_zip({**files, **{f"junk/{i}": b"" for i in range(10_000)}}), 413, "", "entries"),
        ("zip bomb", make_zip({**files, "a.bin": bytes(40 << 20), "b.bin": bytes(40 << 20)}), 413, "", "uncompressed"),
        ("syntax error", make_zip({**files, broken: "def process(event)\n    return event\n"}), 400, broken, "line 1"),
        ("missing pathToCode", make_zip({**files, "config_events.json": json.dumps(events)}), 400,
         "events[1].action.pathToCode", "no code at 'lambda_functions/event_actions/not-there'"),
    ]


def test_bad_bundles_are_4xx_with_their_path_nothing_stored_nothing_deployed(api: Api, tmp_path: Path) -> None:
    api.engine.wait_idle(TWIN)
    stored, instances = api.stored(), len(api.instances())
    for label, raw, status, path, fragment in _bad_bundles(tmp_path):
        got, body = api.post("deployments", raw)
        assert got == status, (label, got, body)
        assert any(e["path"] == path and fragment in e["message"] for e in body["errors"]), (label, body)
    time.sleep(0.2)
    assert api.stored() == stored
    assert len(api.instances()) == instances


def test_bundle_limits_and_content_types(api: Api) -> None:
    status, body = api.post("deployments", b"PK" + bytes(MAX_BUNDLE_BYTES))
    assert status == 413 and f"{MAX_BUNDLE_BYTES:,}" in body["errors"][0]["message"]
    status, body = api.post("deployments", b"this is not a zip")
    assert status == 400 and "not a readable zip archive" in body["errors"][0]["message"]
    status, body = api.post("deployments", b"PK\x03\x04", content_type="application/x-tar")
    assert status == 415 and "application/zip" in body["errors"][0]["message"]
    # Routes that take JSON only still say JSON only.
    status, body = api.post(f"twins/{TWIN}/refresh", make_zip({"twin.json": "{}"}))
    assert status == 415 and "must be sent as application/json (" in body["errors"][0]["message"]

