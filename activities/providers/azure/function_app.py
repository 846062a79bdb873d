"""A Function App (Python 3.11 on Linux, the twin's identity) with its settings and its code.

One converging walk, resumable through `Pending` stages:
1. site: create or reconcile the site (plan, identity, runtime; Flex gets its package container);
2. settings: read-modify-write of the app settings (platform + plan config + wired settings;
   settings set by others are kept; nothing is written when all are current);
3. code: the app's one package (from `payload_functions.packaging`) is deployed only when its
   content hash differs from the hash recorded in the site tag `twin-package-sha256` (written
   through ARM's tags API, `Microsoft.Resources/tags`: a site PATCH does not take tags): Flex
   Consumption through Kudu `/api/publish`, Consumption / Premium through `/api/zipdeploy?isAsync=true`;
4. index: after a deployment, sync triggers and wait until every expected function is listed
   (subscriptions to a function must only be created once it is indexed).
"""

from __future__ import annotations

import os
import threading
from typing import Any, TypeVar

from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import Tags, TagsPatchResource
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import BlobContainer, ContainerProperties
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import (
    FunctionAppConfig as SiteFunctionAppConfig,
)
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
    StringDictionary,
    UserAssignedIdentity,
)

from activities import packages
from activities.clouds import ARM_SCOPE
from activities.providers.azure._common import (
    ArmResource,
    arm_id,
    clouds,
    enum_str,
    get_or_none,
    mgmt,
    poll_seconds,
    subscription_id,
)
from activities.providers.azure.app_service_plan import is_flex
from activities.providers.typed import with_settings
from activities.registry import register
from shared.contracts import (
    RECEIVER_OUTPUTS,
    ControlPlaneSetting,
    Function,
    Output,
    Setting,
    azure_function_url,
)
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, Pending, ResourceCall
from shared.resources.azure import FunctionAppConfig, HostedAppConfig

H = TypeVar("H", bound=HostedAppConfig)

PACKAGE_TAG = "twin-package-sha256"
# Outputs that name a function's URL, besides the cross-cloud receivers.
URL_OUTPUTS: dict[str, str] = {
    **{str(o): str(f) for f, o in RECEIVER_OUTPUTS.items()},
    Output.PROCESSOR_URL: Function.PROCESSOR,
    Output.USER_PROCESSOR_URL: Function.USER_PROCESSOR,
    Output.EVENT_ACTION_URL: Function.EVENT_ACTION,
    Output.LOCAL_HOT_READER_URL: Function.HOT_READER,
    Output.PERSISTER_URL: Function.PERSISTER,
    Output.EVENT_CHECKER_URL: Function.EVENT_CHECKER,
    Output.CONNECTOR_URL: Function.CONNECTOR,
}
KEY_OUTPUTS = {Output.PROCESSOR_KEY, Output.USER_FUNCTIONS_KEY}
# Kudu DeployStatus: 3 Failed, 4 Success (the Kudu deployment service's status codes).
KUDU_FAILED, KUDU_SUCCESS = 3, 4
MAX_DEPLOY_ATTEMPTS = 2
# Index polls before triggers are synced again, and before giving up.
RESYNC_EVERY, MAX_INDEX_POLLS = 10, 120


def site_id(resource_group: str, app: str) -> str:
    return arm_id(subscription_id(), resource_group, "Microsoft.Web/sites", app)


def function_id(resource_group: str, app: str, function: str) -> str:
    return f"{site_id(resource_group, app)}/functions/{function}"


def _farm_id(config: HostedAppConfig) -> str:
    return arm_id(subscription_id(), config.resource_group, "Microsoft.Web/serverfarms", config.plan)


def _identity_id(config: HostedAppConfig) -> str:
    return arm_id(subscription_id(), config.resource_group, "Microsoft.ManagedIdentity/userAssignedIdentities",
                  config.identity)


def _package_container(app: str) -> str:
    return f"pkg-{app}".lower()[:63].rstrip("-")


def build_package(config: FunctionAppConfig) -> Any:
    """The app's package (one zip for the whole app, `activities.packages`)."""
    return packages.package("function-app", f"Function App {config.name}", config)


def platform_settings(call: ResourceCall, config: HostedAppConfig, flex: bool) -> dict[str, str]:
    if flex:
        # Flex takes runtime and version from functionAppConfig and rejects the build settings.
        storage = call.settings.get(Setting.AZURE_WEBJOBS_STORAGE)
        return {Setting.DEPLOYMENT_STORAGE_CONNECTION_STRING: storage} if storage else {}
    return {
        Setting.FUNCTIONS_EXTENSION_VERSION: "~4",
        Setting.FUNCTIONS_WORKER_RUNTIME: config.runtime.name,
        # Remote build installs requirements.txt; run-from-package would skip it.
        Setting.SCM_DO_BUILD_DURING_DEPLOYMENT: "true",
        Setting.ENABLE_ORYX_BUILD: "true",
    }


def merge_settings(current: dict[str, str], wanted: dict[str, str | None]) -> dict[str, str] | None:
    """`current` with `wanted` applied (None removes), or None when nothing would change."""
    merged = with_settings(current, wanted)
    return None if merged == current else merged


_kudu_lock = threading.Lock()
_kudu_clients: dict[tuple[str, str], Any] = {}


def kudu_client(scm_base: str) -> Any:
    """A client for one app's Kudu site, kept per process like the ARM clients: a deployment's
    status polls reuse its connection and its token instead of fetching a new one each time."""
    from azure.core import PipelineClient

    key = (os.environ.get(ControlPlaneSetting.SANDBOX_DIR, ""), scm_base)
    with _kudu_lock:
        client = _kudu_clients.get(key)
        if client is None:
            cl = clouds()
            client = PipelineClient(
                scm_base,
                policies=[RetryPolicy(), BearerTokenCredentialPolicy(cl.azure_credential(), ARM_SCOPE)],
                **cl.azure_client_kwargs(),
            )
            _kudu_clients[key] = client
    return client


class FunctionAppBase(ArmResource[H]):
    """The lifecycle of a Function App (site, settings, package, indexed functions); what differs
    between kinds of app is in `wanted_settings`, `package` and `expected_functions`."""

    label = "Function App"

    # --- ARM resource specifics ---------------------------------------------------------------

    def get(self, call: ResourceCall, config: H) -> Any:
        client = mgmt(WebSiteManagementClient)
        return get_or_none(lambda: client.web_apps.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: H, current: Any) -> list[str]:
        out = []
        if str(current.server_farm_id or "").lower() != _farm_id(config).lower():
            out.append("plan")
        uai = {k.lower() for k in ((current.identity.user_assigned_identities or {}) if current.identity else {})}
        if _identity_id(config).lower() not in uai:
            out.append("identity")
        if not current.https_only:
            out.append("https_only")
        name, version = config.runtime.name, config.runtime.version
        fac = current.function_app_config
        if fac is not None and fac.runtime is not None:
            if (enum_str(fac.runtime.name).lower(), str(fac.runtime.version)) != (name, version):
                out.append("runtime")
        else:
            # A site read does not carry siteConfig ("not returned on normal reads"): config/web does.
            web_config = mgmt(WebSiteManagementClient).web_apps.get_configuration(config.resource_group, config.name)
            if str(web_config.linux_fx_version or "").lower() != f"{name}|{version}".lower():
                out.append("runtime")
        return out

    def put(self, call: ResourceCall, config: H, current: Any) -> None:
        flex = is_flex(config.plan_sku)
        identities = {_identity_id(config): UserAssignedIdentity()}
        if current is not None and current.identity is not None:
            # Keep identities attached by others.
            identities = {**{k: UserAssignedIdentity() for k in (current.identity.user_assigned_identities or {})},
                          **identities}
        runtime = config.runtime
        props = SiteProperties(reserved=True, https_only=True, server_farm_id=_farm_id(config))
        site = Site(
            location=config.location,
            kind="functionapp,linux",
            properties=props,
            identity=ManagedServiceIdentity(type="UserAssigned", user_assigned_identities=identities),
            tags=self.owned_tags(call, config, current),
        )
        if flex:
            props.function_app_config = SiteFunctionAppConfig(
                deployment=FunctionsDeployment(storage=FunctionsDeploymentStorage(
                    type="blobContainer",
                    value=self._package_container_url(config),
                    authentication=FunctionsDeploymentStorageAuthentication(
                        type="StorageAccountConnectionString",
                        storage_account_connection_string_name=Setting.DEPLOYMENT_STORAGE_CONNECTION_STRING,
                    ),
                )),
                runtime=FunctionsRuntime(name=runtime.name, version=runtime.version),
                scale_and_concurrency=FunctionsScaleAndConcurrency(maximum_instance_count=40, instance_memory_mb=2048),
            )
            props.site_config = SiteConfig(min_tls_version="1.2", ftps_state="Disabled")
        else:
            props.site_config = SiteConfig(linux_fx_version=f"{runtime.name.upper()}|{runtime.version}",
                                          min_tls_version="1.2", ftps_state="Disabled")
        if current is None:
            # A new site starts with the platform settings (Flex validates that the setting naming
            # its package storage exists); every other setting is read-modify-written afterwards,
            # and an update never sends settings (a PUT with appSettings would replace them all).
            first = {**platform_settings(call, config, flex)}
            storage = call.settings.get(Setting.AZURE_WEBJOBS_STORAGE)
            if storage:
                first[Setting.AZURE_WEBJOBS_STORAGE] = storage
            props.site_config.app_settings = [NameValuePair(name=k, value=v) for k, v in sorted(first.items())]
        mgmt(WebSiteManagementClient).web_apps.begin_create_or_update(config.resource_group, config.name, site,
                                                                      polling=False)

    def _package_container_url(self, config: H) -> str:
        """Create (if missing) the Flex package container in the setup storage account; its URL."""
        storage = mgmt(StorageManagementClient)
        rg, account, container = config.resource_group, config.storage_account, _package_container(config.name)
        if get_or_none(lambda: storage.blob_containers.get(rg, account, container)) is None:
            storage.blob_containers.create(
                rg, account, container, BlobContainer(container_properties=ContainerProperties(public_access="None")))
        props = storage.storage_accounts.get_properties(rg, account)
        blob = str(props.primary_endpoints.blob if props.primary_endpoints else f"https://{account}.blob.core.windows.net/")
        return blob.rstrip("/") + "/" + container

    def remove(self, call: ResourceCall, config: H, current: Any) -> None:
        mgmt(WebSiteManagementClient).web_apps.delete(config.resource_group, config.name)

    def outputs(self, call: ResourceCall, config: H, current: Any) -> dict[str, str]:
        host = str(current.default_host_name)
        out: dict[str, str] = {}
        for name in call.resource.produces:
            if name in URL_OUTPUTS:
                out[name] = azure_function_url(host, URL_OUTPUTS[name])
            elif name in KEY_OUTPUTS:
                keys = mgmt(WebSiteManagementClient).web_apps.list_host_keys(config.resource_group, config.name)
                key = (keys.function_keys or {}).get("default")
                if not key:
                    raise TransientError(f"Function App {config.name}: the host has no default function key yet")
                out[name] = str(key)
            else:
                raise PermanentError(f"Function App {config.name}: does not know how to produce output {name}")
        return out

    def details(self, current: Any) -> dict[str, Any]:
        return {"id": current.id, "defaultHostName": current.default_host_name, "state": current.state,
                "packageSha256": (current.tags or {}).get(PACKAGE_TAG)}

    # --- what differs between kinds of app (the control plane's own app overrides these) ------

    def wanted_settings(self, call: ResourceCall, config: H, flex: bool) -> dict[str, str | None]:
        """Every app setting this resource manages (platform, static, wired)."""
        return {**platform_settings(call, config, flex), **config.app_settings, **call.settings}

    def prebuild(self, config: H) -> None:
        """Start making the package in the background, so that it is ready when the site is
        (nothing by default: the control plane's own package is built before it is installed)."""

    def package(self, config: H) -> Any:
        """The app's one package (`data`, `sha256_hex`)."""
        raise PermanentError(f"{type(self).__name__} does not define its package")

    def expected_functions(self, config: H) -> list[str]:
        """The functions the deployed package must be seen to hold."""
        raise PermanentError(f"{type(self).__name__} does not define its functions")

    # --- the converging walk ----------------------------------------------------------------

    def ensure_config(self, call: ResourceCall, config: H) -> EnsureResult:
        return self._converge(call, config, None)

    def poll_config(self, call: ResourceCall, config: H) -> EnsureResult:
        token = dict(call.pending.token) if call.pending is not None else {}
        if token.get("op") == "delete":
            return super().poll_config(call, config)
        action: Action = token.get("action", "updated")
        stage = token.get("stage")
        if stage == "deploy":
            return self._poll_deploy(call, config, token, action)
        if stage == "index":
            return self._poll_index(call, config, token, action)
        return self._converge(call, config, action)

    def _converge(self, call: ResourceCall, config: H, action: Action | None) -> EnsureResult:
        rg, app = config.resource_group, config.name
        web = mgmt(WebSiteManagementClient).web_apps
        self.prebuild(config)
        current = self.get(call, config)
        if current is None and action is None:
            return self._stage(config, "site", "created", {}, poll_after=0.0)  # decided, then made (poll)
        if current is not None:
            self._check_owner(call, config, current)  # another twin's: refused before any write
        if current is None or self.changes(call, config, current):
            self.put(call, config, current)
            action = action or ("created" if current is None else "updated")
            current = self.get(call, config)
            if current is None or self._running(current):
                return self._stage(config, "site", action, {})
        flex = is_flex(config.plan_sku) or current.function_app_config is not None
        if self._write_settings(rg, app, self.wanted_settings(call, config, flex)):
            action = action or "updated"
        package = self.package(config)
        if (current.tags or {}).get(PACKAGE_TAG) != package.sha256_hex:
            return self._deploy(config, current, package, action or "updated", flex, attempts=1)
        missing = self._missing_functions(config)
        if missing:
            # The code is current but the host does not list it (e.g. a trigger sync was lost).
            web.sync_function_triggers(rg, app)
            return self._stage(config, "index", action or "updated", {"polls": 0})
        return EnsureResult(action or "unchanged", self.outputs(call, config, current))

    def _write_settings(self, rg: str, app: str, wanted: dict[str, str | None]) -> bool:
        web = mgmt(WebSiteManagementClient).web_apps
        current = dict(web.list_application_settings(rg, app).properties or {})
        merged = merge_settings(current, wanted)
        if merged is None:
            return False
        web.update_application_settings(rg, app, StringDictionary(properties=merged))
        return True

    def _scm_base(self, current: Any) -> str:
        for state in current.host_name_ssl_states or []:
            if enum_str(state.host_type).lower() == "repository" and state.name:
                return f"https://{state.name}"
        for host in current.enabled_host_names or []:
            if ".scm." in host:
                return f"https://{host}"
        raise TransientError(f"Function App {current.name}: no SCM (Kudu) host name is listed yet")

    def _deploy(self, config: H, current: Any, package: Any, action: Action, flex: bool,
                attempts: int) -> EnsureResult:
        scm = self._scm_base(current)
        if flex:
            request = HttpRequest("POST", f"{scm}/api/publish", params={"RemoteBuild": "true", "Deployer": "twin"},
                                  content=package.data, headers={"Content-Type": "application/zip"})
        else:
            request = HttpRequest("POST", f"{scm}/api/zipdeploy", params={"isAsync": "true"}, content=package.data,
                                  headers={"Content-Type": "application/zip"})
        response = kudu_client(scm).send_request(request)
        if response.status_code == 409:
            raise TransientError(f"Function App {config.name}: another deployment is in progress")
        if response.status_code not in (200, 202):
            raise _kudu_error(config.name, "deploy", response)
        location_url = response.headers.get("Location") or f"{scm}/api/deployments/latest"
        return self._stage(config, "deploy", action, {"location": location_url, "scm": scm,
                                                      "sha": package.sha256_hex, "attempts": attempts, "flex": flex})

    def _poll_deploy(self, call: ResourceCall, config: H, token: dict[str, Any],
                     action: Action) -> EnsureResult:
        scm = str(token["scm"])
        response = kudu_client(scm).send_request(HttpRequest("GET", str(token["location"])))
        if response.status_code not in (200, 202):
            raise _kudu_error(config.name, "read the deployment of", response)
        body = response.json()
        status = body.get("status")
        if not body.get("complete") and status not in (KUDU_FAILED, KUDU_SUCCESS):
            return self._stage(config, "deploy", action, token)
        if status == KUDU_FAILED:
            if int(token.get("attempts", 1)) < MAX_DEPLOY_ATTEMPTS:
                current = self.get(call, config)
                if current is None:
                    raise TransientError(f"Function App {config.name} disappeared during its deployment")
                return self._deploy(config, current, self.package(config), action, bool(token.get("flex")),
                                    int(token.get("attempts", 1)) + 1)
            raise PermanentError(
                f"Function App {config.name}: the deployment failed: {body.get('status_text') or 'see the Kudu log'}"
            )
        rg, app = config.resource_group, config.name
        web = mgmt(WebSiteManagementClient).web_apps
        web.sync_function_triggers(rg, app)
        # Record what is deployed, so an unchanged package is never deployed again: merged into the
        # site's tags (others' tags kept) through the tags API, which any tracked resource takes.
        mgmt(ResourceManagementClient).tags.begin_update_at_scope(
            site_id(rg, app), TagsPatchResource(operation="Merge", properties=Tags(tags={PACKAGE_TAG: str(token["sha"])})),
            polling=False)
        # The host usually lists the functions as soon as the deployment succeeded: look once now
        # rather than a poll interval later.
        return self._poll_index(call, config, {"polls": -1}, action)

    def _poll_index(self, call: ResourceCall, config: H, token: dict[str, Any],
                    action: Action) -> EnsureResult:
        missing = self._missing_functions(config)
        if not missing:
            current = self.get(call, config)
            if current is None:
                raise TransientError(f"Function App {config.name} disappeared while its functions were indexed")
            return EnsureResult(action, self.outputs(call, config, current))
        polls = int(token.get("polls", 0)) + 1
        if polls >= MAX_INDEX_POLLS:
            raise PermanentError(
                f"Function App {config.name}: functions {', '.join(missing)} were deployed but never indexed; "
                "check the app's logs for an import error"
            )
        if polls > 0 and polls % RESYNC_EVERY == 0:
            mgmt(WebSiteManagementClient).web_apps.sync_function_triggers(config.resource_group, config.name)
        return self._stage(config, "index", action, {"polls": polls})

    def _missing_functions(self, config: H) -> list[str]:
        web = mgmt(WebSiteManagementClient)
        listed = {str(f.name).rsplit("/", 1)[-1].lower() for f in web.web_apps.list_functions(config.resource_group,
                                                                                             config.name)}
        return [name for name in self.expected_functions(config) if name.lower() not in listed]

    def _stage(self, config: H, stage: str, action: Action, extra: dict[str, Any],
               poll_after: float | None = None) -> EnsureResult:
        token = {**extra, "op": "put", "stage": stage, "action": action}
        return EnsureResult(action, pending=Pending(
            token=token, poll_after_seconds=poll_seconds() if poll_after is None else poll_after,
            description=f"Function App {config.name}: {stage}"))

    # --- settings wired from other resources ------------------------------------------------

    def apply_settings(self, call: ResourceCall) -> bool:
        if not call.settings:
            return False
        config = self.config(call)
        return self._write_settings(config.resource_group, config.name, dict(call.settings))



@register("azure", "function-app")
class FunctionApp(FunctionAppBase[FunctionAppConfig]):
    """A twin's Function App: its payload functions (and users' code) in one package."""

    model = FunctionAppConfig

    def prebuild(self, config: FunctionAppConfig) -> None:
        packages.prebuild("function-app", f"Function App {config.name}", config)

    def package(self, config: FunctionAppConfig) -> Any:
        return build_package(config)

    def expected_functions(self, config: FunctionAppConfig) -> list[str]:
        return [f.name for f in config.functions]


def _kudu_error(app: str, what: str, response: Any) -> Exception:
    status = int(response.status_code)
    try:
        message = response.json().get("Message") or response.text()
    except ValueError:
        message = response.text()
    text = f"Function App {app}: Kudu could not {what} the package (HTTP {status}): {str(message)[:300]}"
    if status in (429, 500, 502, 503, 504, 401):
        # 401 right after creation: the SCM site has not picked up the identity's access yet.
        return TransientError(text)
    return PermanentError(text)


__all__ = ["FunctionApp", "FunctionAppBase", "function_id", "merge_settings", "site_id"]
