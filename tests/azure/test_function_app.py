"""Function Apps: site, settings read-modify-write, package deploy by content hash, indexing."""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import Tags, TagsPatchResource
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import StringDictionary

from activities.providers.azure._common import mgmt
from activities.providers.azure.function_app import PACKAGE_TAG, build_package
from activities.registry import provider_for

APP = "azure/L3_cold/function-app"


def _web() -> Any:
    return mgmt(WebSiteManagementClient)


def _settings(w: Any, rid: str = APP) -> dict[str, str]:
    cfg = w.plan.resource(rid).config
    return dict(_web().web_apps.list_application_settings(cfg.resource_group, cfg.name).properties or {})


@pytest.mark.parametrize("plan_sku", ["FC1", "Y1"])
def test_function_app_deploys_once_and_is_unchanged_after(walker: Any, sandbox: Any, plan_sku: str) -> None:
    clouds = {"azure": {"region": "westeurope", "functions_plan": plan_sku}}
    w = walker(clouds=clouds)
    results = w.ensure_all(upto=APP)
    assert results[APP].action == "created"
    cfg = w.plan.resource(APP).config
    site = _web().web_apps.get(cfg.resource_group, cfg.name)
    assert site.tags[PACKAGE_TAG] == build_package(w.plan.resource(APP).config).sha256_hex
    listed = [f.name.rsplit("/", 1)[-1] for f in _web().web_apps.list_functions(cfg.resource_group, cfg.name)]
    assert listed == ["cold-to-archive-mover"]
    settings = _settings(w)
    storage = w.outputs["azure/setup/storage-account"]["AZURE_STORAGE_CONNECTION_STRING"]
    assert settings["AzureWebJobsStorage"] == storage
    assert settings["BLOB_CONNECTION_STRING"] == storage
    assert settings["ARCHIVE_STORAGE_CONTAINER"] == "archive-data"
    if plan_sku == "FC1":
        assert settings["DEPLOYMENT_STORAGE_CONNECTION_STRING"] == storage
        assert "SCM_DO_BUILD_DURING_DEPLOYMENT" not in settings
        assert site.function_app_config.runtime.version == "3.11"
    else:
        assert settings["SCM_DO_BUILD_DURING_DEPLOYMENT"] == "true"
        config = _web().web_apps.get_configuration(cfg.resource_group, cfg.name)
        assert config.linux_fx_version == "PYTHON|3.11"
    kudu = [r for r in sandbox.requests(0) if "/kudu/" + cfg.name + "/api/" in r["url"] and r["method"] == "POST"]
    assert [r["url"].split("/api/")[1].split("?")[0] for r in kudu] == ["publish" if plan_sku == "FC1" else "zipdeploy"]

    mark = sandbox.seq()
    again = w.ensure(APP)
    assert again.action == "unchanged"
    assert sandbox.mutations(mark) == []

    assert w.delete(APP).action == "deleted"
    assert not w.read(APP).exists
    assert w.delete(APP).action == "absent"


def test_apply_settings_keeps_others_and_skips_when_current(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(upto=APP)
    cfg = w.plan.resource(APP).config
    rg, name = cfg.resource_group, cfg.name
    # Someone else sets a setting of their own.
    _web().web_apps.update_application_settings(rg, name, StringDictionary(properties={**_settings(w), "THEIRS": "1"}))
    app = provider_for("azure", "function-app")
    call = w.call(APP)
    current = {k: v for k, v in call.settings.items()}

    mark = sandbox.seq()
    assert app.apply_settings(type(call)(twin=call.twin, resource=call.resource, settings=current)) is False
    assert sandbox.mutations(mark) == []

    changed = {"COLD_STORAGE_CONTAINER": "other-cold", "NEW_SETTING": "x"}
    assert app.apply_settings(type(call)(twin=call.twin, resource=call.resource, settings=changed)) is True
    after = _settings(w)
    assert after["THEIRS"] == "1" and after["NEW_SETTING"] == "x" and after["COLD_STORAGE_CONTAINER"] == "other-cold"
    assert after["AzureWebJobsStorage"] == current["AzureWebJobsStorage"]

    removal: dict[str, str | None] = {"NEW_SETTING": None}
    assert app.apply_settings(type(call)(twin=call.twin, resource=call.resource, settings=removal)) is True
    assert "NEW_SETTING" not in _settings(w)

    # A re-ensure puts the wired values back and keeps THEIRS.
    assert w.ensure(APP).action == "updated"
    final = _settings(w)
    assert final["COLD_STORAGE_CONTAINER"] == "cold-data" and final["THEIRS"] == "1"
    w.delete("azure/setup/resource-group")


def test_changed_package_is_redeployed(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(upto=APP)
    cfg = w.plan.resource(APP).config
    rg, name = cfg.resource_group, cfg.name
    tags = mgmt(ResourceManagementClient).tags
    tags.begin_update_at_scope(f"{_web().web_apps.get(rg, name).id}",
                               TagsPatchResource(operation="Merge", properties=Tags(tags={PACKAGE_TAG: "stale"}))).result()
    mark = sandbox.seq()
    assert w.ensure(APP).action == "updated"
    posts = [m for m in sandbox.mutations(mark) if "/kudu/" in m]
    assert len(posts) == 1 and posts[0].endswith("/api/publish")
    assert _web().web_apps.get(rg, name).tags[PACKAGE_TAG] == build_package(w.plan.resource(APP).config).sha256_hex
    w.delete("azure/setup/resource-group")
