"""A control plane without a bundle store (no `TWIN_BUNDLE_CONTAINER_URL`): a bundle is refused
with 503 naming the setting, and nothing starts. (Its own module: one local host per process.)"""

from __future__ import annotations

import sys
from pathlib import Path

from bundle_helpers import example_copy, folder_files, make_zip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_helpers import APP, KEY, engine_environ, free_port, http  # noqa: E402

from local_host import LocalHost  # noqa: E402
from shared.contracts import ControlPlaneSetting  # noqa: E402


def test_without_a_bundle_store_a_bundle_is_refused_503_and_not_deployed(tmp_path: Path) -> None:
    port = free_port()
    host = LocalHost(app_dir=APP, state_dir=tmp_path / "host", port=port, function_key=KEY,
                     environ=engine_environ(tmp_path, port))
    host.start()
    try:
        reply = http("POST", f"{host.base_url}/api/deployments", raw=make_zip(folder_files(example_copy(tmp_path))),
                     headers={"x-functions-key": KEY, "Content-Type": "application/zip"})
        assert reply.status == 503, reply.body
        assert ControlPlaneSetting.BUNDLE_CONTAINER_URL in reply.json()["errors"][0]["message"]
        listed = http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/?code={KEY}")
        assert listed.json() == []
    finally:
        host.stop()
