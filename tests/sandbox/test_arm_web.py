"""App Service through WebSiteManagementClient: plans, Function Apps (sync 200), identity,
app settings replace semantics, publishing credentials (LRO), SCM basic-auth policy, host and
function keys, name conflicts, Flex Consumption rules."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import (
    AppServicePlan,
    CsmPublishingCredentialsPoliciesEntity,
    CsmPublishingCredentialsPoliciesEntityProperties,
    ManagedServiceIdentity,
    NameValuePair,
    Site,
    SiteConfig,
    SiteConfigResource,
    SkuDescription,
    StringDictionary,
    UserAssignedIdentity,
)

from sandbox.server import Sandbox

LOC = "westeurope"


@pytest.fixture
def rg(mgmt_client: Any, unique_name: Any) -> str:
    name = unique_name("rg")
    mgmt_client(ResourceManagementClient).resource_groups.create_or_update(name, {"location": LOC})
    return name


def _plan(
    web: WebSiteManagementClient, rg: str, name: str, sku: str = "EP1", tier: str = "ElasticPremium"
) -> Any:
    return web.app_service_plans.begin_create_or_update(
        rg,
        name,
        AppServicePlan(
            location=LOC, kind="functionapp", reserved=True, sku=SkuDescription(name=sku, tier=tier)
        ),
    ).result()


def _site(
    web: WebSiteManagementClient,
    rg: str,
    name: str,
    plan_id: str,
    settings: dict[str, str] | None = None,
    **kw: Any,
) -> Any:
    return web.web_apps.begin_create_or_update(
        rg,
        name,
        Site(
            location=LOC,
            kind="functionapp,linux",
            reserved=True,
            server_farm_id=plan_id,
            site_config=SiteConfig(
                linux_fx_version="Python|3.11",
                app_settings=[NameValuePair(name=k, value=v) for k, v in (settings or {}).items()],
            ),
            **kw,
        ),
    ).result()


def test_function_app_fields_settings_and_keys(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    web = mgmt_client(WebSiteManagementClient)
    mi = mgmt_client(ManagedServiceIdentityClient).user_assigned_identities.create_or_update(
        rg, "id-app", {"location": LOC}
    )
    plan = _plan(web, rg, unique_name("plan"))
    name = unique_name("func")
    seq = sandbox.ctx.request_log.last_seq()
    site = _site(
        web,
        rg,
        name,
        plan.id,
        {"FUNCTIONS_WORKER_RUNTIME": "python", "A": "1"},
        identity=ManagedServiceIdentity(
            type="SystemAssigned, UserAssigned", user_assigned_identities={mi.id: UserAssignedIdentity()}
        ),
    )
    first = sandbox.ctx.request_log.since(seq)[0]
    assert (first.method, first.status) == ("PUT", 200)  # App Service answers site PUTs synchronously
    host = sandbox.arm_url.split("://", 1)[1]
    assert site.default_host_name == f"{host}/sites/{name}"
    states = {s.host_type: s.name for s in site.host_name_ssl_states}
    assert states["Repository"] == f"{host}/kudu/{name}" and states["Standard"] == site.default_host_name
    assert site.identity.principal_id
    assert site.identity.user_assigned_identities[mi.id].principal_id == mi.principal_id
    assert site.identity.user_assigned_identities[mi.id].client_id == mi.client_id
    assert site.state == "Running"
    # A site read has no siteConfig ("not returned in response to normal create and read requests");
    # config/web answers it, without app settings (they are read with appsettings/list).
    assert site.site_config is None and web.web_apps.get(rg, name).site_config is None
    config = web.web_apps.get_configuration(rg, name)
    assert config.linux_fx_version == "Python|3.11" and config.app_settings is None
    settings = web.web_apps.list_application_settings(rg, name)
    assert settings.properties == {"FUNCTIONS_WORKER_RUNTIME": "python", "A": "1"}
    # update_application_settings replaces the whole set.
    web.web_apps.update_application_settings(rg, name, StringDictionary(properties={"B": "2"}))
    assert web.web_apps.list_application_settings(rg, name).properties == {"B": "2"}
    merged = {**web.web_apps.list_application_settings(rg, name).properties, "C": "3"}
    web.web_apps.update_application_settings(rg, name, StringDictionary(properties=merged))
    assert web.web_apps.list_application_settings(rg, name).properties == {"B": "2", "C": "3"}
    creds = web.web_apps.begin_list_publishing_credentials(rg, name).result()
    assert creds.publishing_user_name == f"${name}" and creds.publishing_password
    assert creds.scm_uri.endswith(f"@{host}/kudu/{name}")
    policy = web.web_apps.update_scm_allowed(
        rg,
        name,
        CsmPublishingCredentialsPoliciesEntity(
            properties=CsmPublishingCredentialsPoliciesEntityProperties(allow=True)
        ),
    )
    assert policy.properties.allow is True
    assert web.web_apps.get_scm_allowed(rg, name).properties.allow is True
    keys = web.web_apps.list_host_keys(rg, name)
    assert keys.master_key and keys.function_keys["default"]
    assert "eventgrid_extension" not in (keys.system_keys or {})  # no Event Grid trigger indexed yet
    # Function keys only exist for indexed functions.
    with pytest.raises(ResourceNotFoundError):
        web.web_apps.list_function_keys(rg, name, "ingest")
    assert list(web.web_apps.list_functions(rg, name)) == []
    web.web_apps.sync_function_triggers(rg, name)  # 204 with nothing deployed
    # Re-PUT of the site keeps its identity and host names.
    again = _site(web, rg, name, plan.id, identity=ManagedServiceIdentity(type="SystemAssigned"))
    assert again.identity.principal_id == site.identity.principal_id
    assert web.web_apps.list_application_settings(rg, name).properties == {}
    web.web_apps.delete(rg, name)
    with pytest.raises(ResourceNotFoundError):
        web.web_apps.get(rg, name)
    with pytest.raises(ResourceNotFoundError):
        web.web_apps.list_application_settings(rg, name)


def test_site_name_taken_and_missing_plan(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    web = mgmt_client(WebSiteManagementClient)
    plan = _plan(web, rg, unique_name("plan"))
    name = unique_name("func")
    _site(web, rg, name, plan.id)
    other_rg = unique_name("rg")
    mgmt_client(ResourceManagementClient).resource_groups.create_or_update(other_rg, {"location": LOC})
    other_plan = _plan(web, other_rg, unique_name("plan"))
    with pytest.raises(ResourceExistsError) as err:
        _site(web, other_rg, name, other_plan.id)
    assert err.value.status_code == 409
    with pytest.raises(ResourceNotFoundError):
        _site(web, rg, unique_name("func"), plan.id.replace(plan.name, "nosuchplan"))


def test_flex_consumption_rejects_build_settings(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    web = mgmt_client(WebSiteManagementClient)
    flex = _plan(web, rg, unique_name("plan"), sku="FC1", tier="FlexConsumption")
    with pytest.raises(HttpResponseError) as err:
        _site(web, rg, unique_name("func"), flex.id, {"SCM_DO_BUILD_DURING_DEPLOYMENT": "true"})
    assert err.value.status_code == 400 and "SCM_DO_BUILD_DURING_DEPLOYMENT" in err.value.error.message
    name = unique_name("func")
    _site(web, rg, name, flex.id, {"AzureWebJobsStorage__accountName": "st"})
    with pytest.raises(HttpResponseError) as err:
        web.web_apps.update_application_settings(
            rg, name, StringDictionary(properties={"ENABLE_ORYX_BUILD": "true"})
        )
    assert err.value.status_code == 400


def test_site_config_get_update_patch(sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any) -> None:
    web = mgmt_client(WebSiteManagementClient)
    plan = _plan(web, rg, unique_name("plan"))
    name = unique_name("func")
    _site(web, rg, name, plan.id, {"KEEP": "1"})
    assert web.web_apps.get_configuration(rg, name).linux_fx_version == "Python|3.11"
    replaced = web.web_apps.create_or_update_configuration(
        rg, name, SiteConfigResource(linux_fx_version="Python|3.12", ftps_state="Disabled")
    )
    assert replaced.linux_fx_version == "Python|3.12" and replaced.ftps_state == "Disabled"
    # PATCH merges into what is there.
    patched = web.web_apps.update_configuration(rg, name, SiteConfigResource(linux_fx_version="Python|3.11"))
    assert patched.linux_fx_version == "Python|3.11" and patched.ftps_state == "Disabled"
    assert web.web_apps.get_configuration(rg, name).linux_fx_version == "Python|3.11"
    assert web.web_apps.get(rg, name).site_config is None  # not on a normal read
    # App settings live apart from config/web and are untouched by it.
    assert web.web_apps.list_application_settings(rg, name).properties == {"KEEP": "1"}


def test_plans_list_and_delete(sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any) -> None:
    web = mgmt_client(WebSiteManagementClient)
    name = unique_name("plan")
    plan = _plan(web, rg, name)
    assert plan.sku.name == "EP1" and plan.provisioning_state == "Succeeded"
    assert [p.name for p in web.app_service_plans.list_by_resource_group(rg)] == [name]
    web.app_service_plans.delete(rg, name)
    assert list(web.app_service_plans.list_by_resource_group(rg)) == []
