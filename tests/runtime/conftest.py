"""Fixtures: a private sandbox per test module with the Function App runtime running, and
helpers to create a Function App through azure-mgmt-web and deploy a package through Kudu."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import (
    AppServicePlan,
    ManagedServiceIdentity,
    NameValuePair,
    Site,
    SiteConfig,
    SkuDescription,
    UserAssignedIdentity,
)

from sandbox.core.auth import SandboxCredential
from sandbox.runtime import FunctionAppRuntime
from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"


class AzureEnv:
    def __init__(self, sb: Sandbox, runtime: FunctionAppRuntime) -> None:
        self.sb = sb
        self.runtime = runtime
        self.cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
        self.kw: dict[str, Any] = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
        self.sub = sb.ctx.subscription_id
        self.web = WebSiteManagementClient(self.cred, self.sub, **self.kw)
        self.resources = ResourceManagementClient(self.cred, self.sub, **self.kw)
        self.msi = ManagedServiceIdentityClient(self.cred, self.sub, **self.kw)

    def group(self, rg: str) -> None:
        self.resources.resource_groups.create_or_update(rg, {"location": LOC})

    def identity(self, rg: str, name: str) -> Any:
        return self.msi.user_assigned_identities.create_or_update(rg, name, {"location": LOC})

    def function_app(self, rg: str, name: str, settings: dict[str, str], identity_id: str | None = None) -> Site:
        plan = self.web.app_service_plans.begin_create_or_update(
            rg, f"{name}-plan",
            AppServicePlan(location=LOC, kind="functionapp", reserved=True,
                           sku=SkuDescription(name="EP1", tier="ElasticPremium")),
        ).result()
        identity = (
            ManagedServiceIdentity(type="UserAssigned", user_assigned_identities={identity_id: UserAssignedIdentity()})
            if identity_id else None
        )
        return self.web.web_apps.begin_create_or_update(
            rg, name,
            Site(location=LOC, kind="functionapp,linux", reserved=True, server_farm_id=plan.id, identity=identity,
                 site_config=SiteConfig(linux_fx_version="Python|3.11",
                                        app_settings=[NameValuePair(name=k, value=v) for k, v in settings.items()])),
        ).result()

    def zip_deploy(self, site: Site, data: bytes) -> dict[str, Any]:
        scm = "https://" + next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
        client = PipelineClient(scm, policies=[RetryPolicy(), BearerTokenCredentialPolicy(self.cred, ARM_SCOPE)],
                                connection_verify=self.sb.ca_file)
        r = client.send_request(HttpRequest("POST", f"{scm}/api/zipdeploy", params={"isAsync": "true"}, content=data,
                                            headers={"Content-Type": "application/zip"}))
        assert r.status_code == 202, r.text()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status: dict[str, Any] = client.send_request(HttpRequest("GET", r.headers["Location"])).json()
            if status.get("complete"):
                assert status["status"] == 4, status
                return status
            time.sleep(0.05)
        raise AssertionError("the Kudu deployment did not complete in 30 s")

    def set_settings(self, rg: str, name: str, changes: dict[str, str]) -> None:
        current = self.web.web_apps.list_application_settings(rg, name)
        current.properties = {**(current.properties or {}), **changes}
        self.web.web_apps.update_application_settings(rg, name, current)


@pytest.fixture(scope="module")
def azure_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEnv]:
    sb = Sandbox(tmp_path_factory.mktemp("runtime-sandbox"), profile="instant", with_blob=False, with_aws=False)
    sb.start()
    try:
        runtime: FunctionAppRuntime = sb.function_apps
        yield AzureEnv(sb, runtime)
    finally:
        sb.stop()


@pytest.fixture
def make_azure_env() -> Any:
    """`make_azure_env(sandbox, runtime)`: the helpers for a test's own sandbox."""
    return AzureEnv
