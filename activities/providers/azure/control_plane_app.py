"""The control plane's own Function App (`install`): the same lifecycle as a twin's apps
(`FunctionAppBase`: site, settings, package, indexed functions), on Flex Consumption with
nothing keyed: the deployment container and `AzureWebJobsStorage` are reached with the app's
user-assigned identity, Application Insights with Entra, the Durable Task Scheduler (its option)
with the identity too.

Its package is the control plane itself, zipped by `install` per `.funcignore`
(`twin_cli/package.py`) and kept beside the installing process's state: the configuration names
the file and its SHA-256, which is checked before the upload and, as the site's
`twin-package-sha256` tag, decides whether to upload at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import FunctionAppConfig as SiteFunctionAppConfig
from azure.mgmt.web.models import (
    FunctionsDeployment,
    FunctionsDeploymentStorage,
    FunctionsDeploymentStorageAuthentication,
    FunctionsRuntime,
    FunctionsScaleAndConcurrency,
    ManagedServiceIdentity,
    NameValuePair,
    Site,
    SiteConfig,
    SiteProperties,
    UserAssignedIdentity,
)

from activities.providers.azure._common import enum_str, mgmt
from activities.providers.azure.function_app import FunctionAppBase, _farm_id, _identity_id
from activities.registry import register
from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError
from shared.engine.infrastructure import (
    DTS_CONNECTION_STRING,
    DTS_ENDPOINT,
    INSIGHTS_AUTHENTICATION_STRING,
    INSIGHTS_CONNECTION_STRING,
    WEBJOBS_STORAGE_CREDENTIAL,
    InstallOutput,
)
from shared.engine.types import ResourceCall
from shared.resources.azure import ControlPlaneAppConfig

DEPLOYMENT_AUTH = "UserAssignedIdentity"


@dataclass(frozen=True)
class ControlPlaneZip:
    data: bytes = field(repr=False)
    sha256_hex: str


def read_package(config: ControlPlaneAppConfig) -> ControlPlaneZip:
    """The zip the configuration names, refused unless its bytes have the configured SHA-256."""
    path = Path(config.package.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"the control plane's package {path} cannot be read ({exc.strerror}); run install "
                             "again, which builds it") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != config.package.sha256:
        raise PermanentError(f"the control plane's package {path} is not the one planned (SHA-256 {digest[:12]}..., "
                             f"planned {config.package.sha256[:12]}...); run install again")
    return ControlPlaneZip(data, digest)


def composed_settings(config: ControlPlaneAppConfig, settings: dict[str, str | None]) -> dict[str, str | None]:
    """Settings made of wired values: the identity's client id names the credential of host
    storage, Application Insights and the Durable Task Scheduler."""
    client_id = settings.get(ControlPlaneSetting.AZURE_CLIENT_ID)
    out: dict[str, str | None] = {}
    if client_id and settings.get(INSIGHTS_CONNECTION_STRING):
        out[INSIGHTS_AUTHENTICATION_STRING] = f"ClientId={client_id};Authorization=AAD"
    endpoint = settings.get(DTS_ENDPOINT)
    if config.durable_backend == "durable-task-scheduler" and client_id and endpoint:
        out[DTS_CONNECTION_STRING] = f"Endpoint={endpoint};Authentication=ManagedIdentity;ClientID={client_id}"
    return out


@register("azure", "control-plane-app")
class ControlPlaneApp(FunctionAppBase[ControlPlaneAppConfig]):
    model = ControlPlaneAppConfig
    label = "the control plane's Function App"

    def differs(self, call: ResourceCall, config: ControlPlaneAppConfig, current: Any) -> list[str]:
        out = super().differs(call, config, current)
        fac = current.function_app_config
        storage = fac.deployment.storage if fac is not None and fac.deployment is not None else None
        auth = storage.authentication if storage is not None else None
        if auth is None or enum_str(auth.type) != DEPLOYMENT_AUTH or str(
                auth.user_assigned_identity_resource_id or "").lower() != _identity_id(config).lower():
            out.append("deployment_storage")
        scale = fac.scale_and_concurrency if fac is not None else None
        if scale is None or (scale.maximum_instance_count, scale.instance_memory_mb) != (
                config.maximum_instance_count, config.instance_memory_mb):
            out.append("scale")
        return out

    def put(self, call: ResourceCall, config: ControlPlaneAppConfig, current: Any) -> None:
        identities = {_identity_id(config): UserAssignedIdentity()}
        if current is not None and current.identity is not None:
            identities = {**{k: UserAssignedIdentity() for k in (current.identity.user_assigned_identities or {})},
                          **identities}
        props = SiteProperties(reserved=True, https_only=True, server_farm_id=_farm_id(config))
        props.function_app_config = SiteFunctionAppConfig(
            deployment=FunctionsDeployment(storage=FunctionsDeploymentStorage(
                type="blobContainer",
                value=self._package_container_url(config),
                authentication=FunctionsDeploymentStorageAuthentication(
                    type=DEPLOYMENT_AUTH, user_assigned_identity_resource_id=_identity_id(config)),
            )),
            runtime=FunctionsRuntime(name=config.runtime.name, version=config.runtime.version),
            scale_and_concurrency=FunctionsScaleAndConcurrency(maximum_instance_count=config.maximum_instance_count,
                                                               instance_memory_mb=config.instance_memory_mb),
        )
        props.site_config = SiteConfig(min_tls_version="1.2", ftps_state="Disabled")
        if current is None:
            # A new site starts with what its host needs to reach its storage (identity-based);
            # the rest is read-modify-written once it exists.
            first = {k: v for k, v in self.wanted_settings(call, config, True).items()
                     if v is not None and k.startswith("AzureWebJobsStorage")}
            props.site_config.app_settings = [NameValuePair(name=k, value=v) for k, v in sorted(first.items())]
        site = Site(location=config.location, kind="functionapp,linux", properties=props,
                    identity=ManagedServiceIdentity(type="UserAssigned", user_assigned_identities=identities),
                    tags=self.owned_tags(call, config, current))
        mgmt(WebSiteManagementClient).web_apps.begin_create_or_update(config.resource_group, config.name, site,
                                                                      polling=False)

    def wanted_settings(self, call: ResourceCall, config: ControlPlaneAppConfig, flex: bool) -> dict[str, str | None]:
        settings: dict[str, str | None] = {**config.app_settings, **call.settings}
        return {WEBJOBS_STORAGE_CREDENTIAL: "managedidentity", **settings, **composed_settings(config, settings)}

    def package(self, config: ControlPlaneAppConfig) -> Any:
        return read_package(config)

    def expected_functions(self, config: ControlPlaneAppConfig) -> list[str]:
        return list(config.functions)

    def outputs(self, call: ResourceCall, config: ControlPlaneAppConfig, current: Any) -> dict[str, str]:
        return {name: f"https://{current.default_host_name}" for name in call.resource.produces
                if name == InstallOutput.APP_URL}


__all__ = ["ControlPlaneApp", "composed_settings", "read_package"]
