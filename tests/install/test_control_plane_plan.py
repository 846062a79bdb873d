"""The control plane's own plan, its package and the isolation the sandbox runs packages in
(fast: no sandbox)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from activities.registry import has_provider
from shared.contracts import ControlPlaneSetting, Setting
from shared.engine.infrastructure import DTS_ENDPOINT, DTS_TASK_HUB, EVENTS_FUNCTION, WATCH_FUNCTION
from shared.engine.plan import engine_plan_of
from shared.plan.control_plane import (
    CONTRIBUTOR,
    USER_ACCESS_ADMINISTRATOR,
    AwsSide,
    InstallOptions,
    build_control_plane_plan,
    resource_names,
)
from shared.resources import config_model, parse_config
from shared.resources.ownership import INSTALLER, Owner, claim

ROOT = Path(__file__).resolve().parents[2]
SUB = "00000000-0000-0000-0000-000000000000"


def options(**changes: object) -> InstallOptions:
    base: dict[str, object] = dict(name="twin-control-plane", location="westeurope", subscription_id=SUB,
                                   package_sha256="a" * 64, package_path="/tmp/p.zip",
                                   functions=(EVENTS_FUNCTION, WATCH_FUNCTION))
    base.update(changes)
    return InstallOptions(**base)  # type: ignore[arg-type]


def test_every_resource_has_a_typed_config_and_a_provider_and_the_graph_is_a_dag() -> None:
    plan = build_control_plane_plan(options(durable_backend="durable-task-scheduler",
                                            aws=AwsSide("123456789012", "us-east-1", "tenant")))
    for r in plan.resources:
        parse_config(r.id, r.config.to_json(), config_model(r.provider, r.kind))
        assert has_provider(r.provider, r.kind), r.id
    assert len(plan.topological_order()) == len(plan.resources)
    assert engine_plan_of(plan).problems == ()


def test_the_app_gets_its_settings_from_the_resources_by_wires() -> None:
    plan = build_control_plane_plan(options(durable_backend="durable-task-scheduler",
                                            aws=AwsSide("123456789012", "us-east-1", "tenant")))
    app = plan.resource("azure/setup/app")
    wired = plan.settings_of(app.id)
    for setting in (ControlPlaneSetting.KEY_VAULT_URL, ControlPlaneSetting.EVENTS_ENDPOINT,
                    ControlPlaneSetting.BUNDLE_CONTAINER_URL, ControlPlaneSetting.AZURE_CLIENT_ID,
                    ControlPlaneSetting.AWS_ROLE_ARN, DTS_ENDPOINT, "AzureWebJobsStorage__clientId",
                    "AzureWebJobsStorage__blobServiceUri", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        assert setting in wired, setting
    static = app.config.app_settings  # type: ignore[attr-defined]
    assert static[DTS_TASK_HUB] == "twin-control-plane" and static[ControlPlaneSetting.AWS_REGION] == "us-east-1"
    assert not any("key" in k.lower() for k in static), static  # nothing secret is configured
    # Subscriptions point at the app's functions and come after it.
    for rid in ("azure/setup/events-subscription", "azure/setup/watch-subscription"):
        assert app.id in plan.resource(rid).needs
    # The role-holding identity is wired into every assignment and the AWS role's trust.
    for r in plan.resources:
        if r.kind in ("role-assignment", "web-identity-role"):
            assert plan.settings_of(r.id) == {Setting.PRINCIPAL_ID: "AZURE_IDENTITY_PRINCIPAL_ID"}, r.id


def test_target_subscriptions_get_contributor_and_user_access_administrator() -> None:
    plan = build_control_plane_plan(options(target_subscriptions=("s1", "s2")))
    scopes = {r.config.scope.name: r.config.role_definition_ids  # type: ignore[attr-defined]
              for r in plan.resources if r.kind == "role-assignment"
              and r.config.scope.kind == "subscription"}  # type: ignore[attr-defined]
    assert scopes == {"s1": (CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR), "s2": (CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR)}
    assert not any(r.kind.startswith("durable-task") or r.provider == "aws" for r in plan.resources)


def test_globally_named_resources_get_valid_stable_names() -> None:
    names = resource_names(options())
    assert re.fullmatch(r"[a-z0-9]{3,24}", names["storage"]) and 3 <= len(names["vault"]) <= 24
    assert len(names["app"]) <= 60 and names == resource_names(options())
    assert resource_names(options(location="northeurope"))["storage"] != names["storage"]


def test_the_package_is_reproducible_and_holds_only_what_funcignore_keeps() -> None:
    from twin_cli.package import build, deterministic_zip, host_json_for, package_files

    first = build()
    # Zipped again from the tree (without indexing it a second time): the same bytes.
    assert deterministic_zip(package_files()) == first.data
    tops = {f.split("/")[0] for f in first.files}
    assert {"function_app.py", "host.json", "requirements.txt", "control_plane", "shared", "activities"} <= tops
    assert not tops & {"tests", "sandbox", "twin_cli", "local_host", "benchmarks", ".git", ".venv", "node_modules"}
    assert not any(f.endswith(".pyc") or "__pycache__" in f for f in first.files)
    assert {EVENTS_FUNCTION, WATCH_FUNCTION, "deploy_twin", "health"} <= set(first.functions)
    with zipfile.ZipFile(io.BytesIO(first.data)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    dts = json.loads(host_json_for((ROOT / "host.json").read_bytes(), "durable-task-scheduler"))
    assert dts["extensions"]["durableTask"]["storageProvider"] == {
        "type": "azureManaged", "connectionStringName": "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"}
    assert dts["extensions"]["durableTask"]["hubName"] == "%TASKHUB_NAME%"


@pytest.mark.parametrize("module", ["twin_cli.commands.serve", "sandbox.core.auth", "shared.not_in_the_package"])
def test_an_isolated_package_cannot_import_what_it_does_not_carry(tmp_path: Path, module: str) -> None:
    app = tmp_path / "app"
    (app / "shared").mkdir(parents=True)
    (app / "shared" / "__init__.py").write_text("")
    (app / "host.json").write_text("{}")
    (app / "function_app.py").write_text(f"import azure.functions as func\nimport {module}\napp = func.FunctionApp()\n")
    done = subprocess.run([sys.executable, "-m", "sandbox.runtime.isolated", "index", str(app)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and "in the deployed package" in answer["error"], answer


def test_a_twin_named_like_the_control_plane_is_another_owner_of_its_resources() -> None:
    """The control plane's own objects carry the installer's mark: a twin given the control
    plane's name finds them foreign, never its own (it would otherwise adopt and delete them)."""
    plan = build_control_plane_plan(options(aws=AwsSide("123456789012", "us-east-1", "tenant")))
    twin_of_same_name = Owner(twin="twin-control-plane")
    for r in plan.resources:
        owner = r.config.owner
        assert owner is not None and owner.twin == "twin-control-plane", r.id
        found = claim(twin_of_same_name, owner.tags())
        assert found.verdict == "foreign" and INSTALLER in found.holder, (r.id, found)
