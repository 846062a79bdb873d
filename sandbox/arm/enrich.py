"""Read-only fields and action bodies per resource type: what the real services add to a
resource (principal ids, host names, endpoints, keys) and answer to the actions we call.
The deployer chains on these fields, so they are stable for the life of a resource."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from sandbox.arm.ids import ResourceId
from sandbox.arm.models import ArmBackend, ArmError, FunctionInfo, Resource, SiteState, new_key
from sandbox.core.context import SandboxContext

DURABLE_TRIGGERS = frozenset({"orchestrationTrigger", "activityTrigger", "entityTrigger"})
IOTHUB_RULES = {
    "iothubowner": "RegistryWrite, ServiceConnect, DeviceConnect",
    "service": "ServiceConnect",
    "device": "DeviceConnect",
    "registryRead": "RegistryRead",
    "registryReadWrite": "RegistryWrite",
}


def _host(ctx: SandboxContext) -> str:
    """`127.0.0.1:PORT` of the Azure server (host names are given without a scheme)."""
    return ctx.azure_base_url.split("://", 1)[-1]


def site_default_host(ctx: SandboxContext, site_name: str) -> str:
    return f"{_host(ctx)}/sites/{site_name}"


def scm_host(ctx: SandboxContext, site_name: str) -> str:
    return f"{_host(ctx)}/kudu/{site_name}"


def _secret(res: Resource, name: str, factory: Any = new_key) -> str:
    if name not in res.secrets:
        res.secrets[name] = factory()
    return res.secrets[name]


def _guid() -> str:
    return str(uuid.uuid4())


def enrich(ctx: SandboxContext, b: ArmBackend, res: Resource, existing: Resource | None) -> None:
    """Fill the read-only fields of `res` (a new or updated resource body) in place."""
    body = res.body
    props: dict[str, Any] = body.setdefault("properties", {})
    _identity(ctx, b, res)
    t = res.rid.type_key
    name = res.rid.name
    if t == "microsoft.managedidentity/userassignedidentities":
        props["principalId"] = _secret(res, "principal_id", _guid)
        props["clientId"] = _secret(res, "client_id", _guid)
        props["tenantId"] = ctx.tenant_id
    elif t == "microsoft.storage/storageaccounts":
        _secret(res, "key1")
        _secret(res, "key2")
        props["primaryEndpoints"] = {
            s: f"https://{name}.{s}.core.windows.net/"
            for s in ("blob", "queue", "table", "file", "dfs", "web")
        }
        # With the sandbox's Blob emulator running, the account's Blob data plane is served there.
        blob_endpoint = getattr(ctx.hooks_for("Microsoft.Storage/storageAccounts"), "blob_endpoint", None)
        local_blob = blob_endpoint(name) if callable(blob_endpoint) else None
        if local_blob:
            props["primaryEndpoints"]["blob"] = local_blob
        props["primaryLocation"] = body.get("location")
        props["statusOfPrimary"] = "available"
        props.setdefault(
            "creationTime", existing.body["properties"].get("creationTime") if existing else _iso()
        )
    elif t == "microsoft.web/serverfarms":
        props.setdefault("status", "Ready")
        props["numberOfSites"] = sum(
            1
            for r in b.resources.values()
            if r.rid.type_key == "microsoft.web/sites"
            and str(r.body.get("properties", {}).get("serverFarmId", "")).lower() == res.rid.key
        )
    elif t == "microsoft.web/sites":
        _site(ctx, b, res, existing)
    elif t == "microsoft.devices/iothubs":
        for rule in IOTHUB_RULES:
            _secret(res, f"{rule}:primary")
            _secret(res, f"{rule}:secondary")
        props["hostName"] = f"{name}.azure-devices.net"
        props["state"] = "Active" if existing is not None else "Activating"
        props.setdefault("eventHubEndpoints", {})
        props["eventHubEndpoints"]["events"] = {
            "retentionTimeInDays": 1,
            "partitionCount": 4,
            "partitionIds": ["0", "1", "2", "3"],
            "path": name,
            "endpoint": f"sb://iothub-ns-{name}.servicebus.windows.net/",
        }
    elif t == "microsoft.eventgrid/topics":
        _secret(res, "key1")
        _secret(res, "key2")
        props["endpoint"] = f"{ctx.azure_base_url}/eventgrid/{name}/api/events"
        props.setdefault("inputSchema", "EventGridSchema")
        props.setdefault("publicNetworkAccess", "Enabled")
    elif t == "microsoft.eventgrid/systemtopics":
        props["metricResourceId"] = _secret(res, "metric_id", _guid)
    elif t in (
        "microsoft.eventgrid/eventsubscriptions",
        "microsoft.eventgrid/systemtopics/eventsubscriptions",
    ):
        props["topic"] = res.rid.parent
        dest = props.get("destination")
        if isinstance(dest, dict) and dest.get("endpointType") == "WebHook":
            dprops = dest.setdefault("properties", {})
            url = dprops.get("endpointUrl")
            if isinstance(url, str) and url:
                dprops["endpointBaseUrl"] = url.split("?", 1)[0]
    elif t == "microsoft.documentdb/databaseaccounts":
        for k in (
            "primaryMasterKey",
            "secondaryMasterKey",
            "primaryReadonlyMasterKey",
            "secondaryReadonlyMasterKey",
        ):
            _secret(res, k)
        props["documentEndpoint"] = f"https://{name}.documents.azure.com:443/"
        props.setdefault("databaseAccountOfferType", "Standard")
        # The kind is set at creation only (the document's default is GlobalDocumentDB); a later PUT keeps it.
        body["kind"] = (existing.body if existing else body).get("kind", "GlobalDocumentDB")
    elif t in (
        "microsoft.documentdb/databaseaccounts/sqldatabases",
        "microsoft.documentdb/databaseaccounts/sqldatabases/containers",
    ):
        resource = props.get("resource")
        if isinstance(resource, dict):
            resource["_rid"] = _secret(res, "rid", lambda: hashlib.sha1(res.rid.key.encode()).hexdigest()[:8])
            resource["_ts"] = int(time.time())
            resource["_etag"] = res.etag
        props.pop("options", None)
    elif t == "microsoft.dashboard/grafana":
        suffix = hashlib.sha1(res.rid.key.encode()).hexdigest()[:8]
        loc = str(body.get("location", "westeurope")).replace(" ", "").lower()
        props["endpoint"] = f"https://{name}-{suffix}.{loc[:3]}.grafana.azure.com"
        props.setdefault("grafanaVersion", "11.6.0")
    elif t == "microsoft.digitaltwins/digitaltwinsinstances":
        props["createdTime"] = existing.body["properties"].get("createdTime") if existing else _iso()
        props["lastUpdatedTime"] = _iso()
        props.setdefault("publicNetworkAccess", "Enabled")
    elif t == "microsoft.operationalinsights/workspaces":
        props["customerId"] = _secret(res, "customer_id", _guid)
        props.setdefault("createdDate", existing.body["properties"].get("createdDate") if existing else _iso())
        props["modifiedDate"] = _iso()
    elif t == "microsoft.insights/components":
        key = _secret(res, "instrumentation_key", _guid)
        app_id = _secret(res, "app_id", _guid)
        loc = str(body.get("location", "westeurope")).replace(" ", "").lower()
        props["InstrumentationKey"] = key
        props["AppId"] = app_id
        props["ApplicationId"] = name
        props["TenantId"] = ctx.subscription_id
        props["Name"] = name
        props["ConnectionString"] = (f"InstrumentationKey={key};IngestionEndpoint=https://{loc}-0.in.applicationinsights."
                                     f"azure.com/;LiveEndpoint=https://{loc}.livediagnostics.monitor.azure.com/;"
                                     f"ApplicationId={app_id}")
        props.setdefault("CreationDate", existing.body["properties"].get("CreationDate") if existing else _iso())
    elif t == "microsoft.durabletask/schedulers":
        suffix = hashlib.sha1(res.rid.key.encode()).hexdigest()[:4]
        loc = str(body.get("location", "westeurope")).replace(" ", "").lower()
        props["endpoint"] = f"https://{name}-{suffix}.{loc}.durabletask.io"
    elif t == "microsoft.keyvault/vaults":
        # Served by sandbox/keyvault under a path (see there for the ids this implies).
        props["vaultUri"] = f"{ctx.azure_base_url}/keyvault/{name}/"
        props.setdefault("tenantId", ctx.tenant_id)
        props.setdefault("enableSoftDelete", True)
        props.setdefault("softDeleteRetentionInDays", 90)
        props.setdefault("enableRbacAuthorization", False)
    if body.get("location") is None and existing is not None and existing.body.get("location"):
        body["location"] = existing.body["location"]


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _identity(ctx: SandboxContext, b: ArmBackend, res: Resource) -> None:
    ident = res.body.get("identity")
    if not isinstance(ident, dict):
        return
    kind = str(ident.get("type", "")).replace(" ", "").lower()
    if "systemassigned" in kind:
        ident["principalId"] = _secret(res, "system_principal_id", _guid)
        ident["tenantId"] = ctx.tenant_id
    else:
        ident.pop("principalId", None)
        ident.pop("tenantId", None)
    uai = ident.get("userAssignedIdentities")
    if isinstance(uai, dict):
        for mi_id in list(uai):
            mi = b.get(mi_id)
            if mi is None or mi.rid.type_key != "microsoft.managedidentity/userassignedidentities":
                raise ArmError(
                    400,
                    "FailedIdentityOperation",
                    f"Identity operation for resource '{res.rid.id}' failed: user assigned identity '{mi_id}' was not found.",
                )
            uai[mi_id] = {
                "principalId": mi.body["properties"]["principalId"],
                "clientId": mi.body["properties"]["clientId"],
            }


def _site(ctx: SandboxContext, b: ArmBackend, res: Resource, existing: Resource | None) -> None:
    props = res.body["properties"]
    name = res.rid.name
    state = b.site_state(res.rid.key)
    site_config = props.get("siteConfig")
    if isinstance(site_config, dict):
        settings = site_config.get("appSettings")
        if isinstance(settings, list):
            # A site PUT with appSettings replaces the whole set, as App Service does.
            state.app_settings = {
                str(s["name"]): str(s.get("value") or "")
                for s in settings
                if isinstance(s, dict) and "name" in s
            }
        site_config["appSettings"] = None  # never echoed back: read them with appsettings/list
    default_host = site_default_host(ctx, name)
    scm = scm_host(ctx, name)
    props["defaultHostName"] = default_host
    props["hostNames"] = [default_host]
    props["enabledHostNames"] = [default_host, scm]
    props["hostNameSslStates"] = [
        {"name": default_host, "sslState": "Disabled", "hostType": "Standard"},
        {"name": scm, "sslState": "Disabled", "hostType": "Repository"},
    ]
    props["state"] = existing.body["properties"].get("state", "Running") if existing else "Running"
    props["usageState"] = "Normal"
    props["availabilityState"] = "Normal"
    props["repositorySiteName"] = name
    props.setdefault("resourceGroup", res.rid.resource_group)
    if res.body.get("kind") is None:
        res.body["kind"] = existing.body.get("kind") if existing else "app"


# --- bodies of the Web actions -----------------------------------------------------------------


def app_settings_body(site: Resource, state: SiteState) -> dict[str, Any]:
    # A proxy resource (StringDictionary): no location.
    return {
        "id": f"{site.rid.id}/config/appsettings",
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "properties": dict(state.app_settings),
    }


def site_config_body(site: Resource) -> dict[str, Any]:
    cfg = dict(site.body.get("properties", {}).get("siteConfig") or {})
    cfg.pop("appSettings", None)
    return {
        "id": f"{site.rid.id}/config/web",
        "name": "web",
        "type": "Microsoft.Web/sites/config",
        "properties": cfg,
    }


def publishing_credentials_body(ctx: SandboxContext, site: Resource, state: SiteState) -> dict[str, Any]:
    user = f"${site.rid.name}"
    return {
        "id": f"{site.rid.id}/publishingcredentials/$" + site.rid.name,
        "name": site.rid.name,
        "type": "Microsoft.Web/sites/publishingcredentials",
        "properties": {
            "name": None,
            "publishingUserName": user,
            "publishingPassword": state.publishing_password,
            "scmUri": f"https://{user}:{state.publishing_password}@{scm_host(ctx, site.rid.name)}",
        },
    }


def scm_policy_body(rid: ResourceId, state: SiteState) -> dict[str, Any]:
    allow = state.scm_basic_auth if rid.name.lower() == "scm" else state.ftp_basic_auth
    return {
        "id": rid.id,
        "name": rid.name.lower(),
        "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
        "properties": {"allow": allow},
    }


def host_keys_body(ctx: SandboxContext, site: Resource, state: SiteState) -> dict[str, Any]:
    host = ctx.function_hosts.get(site.rid.key)
    master = host.master_key if host is not None and host.master_key else state.master_key
    return {
        "masterKey": master,
        "functionKeys": {"default": state.default_function_key},
        "systemKeys": dict(state.system_keys),
    }


def function_keys_body(site: Resource, state: SiteState, fn_name: str) -> dict[str, Any]:
    key = state.function_keys.setdefault(fn_name.lower(), new_key()[:56])
    return {
        "id": f"{site.rid.id}/functions/{fn_name}/keys",
        "name": fn_name,
        "type": "Microsoft.Web/sites/functions/keys",
        "properties": {"default": key},
    }


def function_body(ctx: SandboxContext, site: Resource, fn: FunctionInfo) -> dict[str, Any]:
    site_name = site.rid.name
    scm = scm_host(ctx, site_name)
    bindings: list[dict[str, Any]] = [{"type": fn.trigger, "direction": "in", "name": fn.param}]
    if fn.trigger == "httpTrigger":
        bindings[0].update(
            {"authLevel": "function", "route": fn.route or fn.name, "methods": ["post", "get"]}
        )
        bindings.append({"type": "http", "direction": "out", "name": "$return"})
    bindings.extend(fn.extra_bindings)
    invoke = (
        f"https://{site_default_host(ctx, site_name)}/api/{fn.route or fn.name}"
        if fn.trigger == "httpTrigger"
        else None
    )
    return {
        "id": f"{site.rid.id}/functions/{fn.name}",
        "name": f"{site_name}/{fn.name}",
        "type": "Microsoft.Web/sites/functions",
        "properties": {
            "function_app_id": site.rid.id,
            "script_root_path_href": f"https://{scm}/admin/vfs/home/site/wwwroot/",
            "script_href": f"https://{scm}/admin/vfs/home/site/wwwroot/function_app.py",
            "config_href": None,
            "href": f"https://{scm}/admin/functions/{fn.name}",
            "config": {
                "name": fn.name,
                "entryPoint": fn.name,
                "scriptFile": "function_app.py",
                "language": "python",
                "functionDirectory": "",
                "bindings": bindings,
            },
            "invoke_url_template": invoke,
            "language": "python",
            "isDisabled": False,
        },
    }


def onedeploy_status(site: Resource, state: SiteState) -> dict[str, Any]:
    latest = state.deployments[-1] if state.deployments else None
    return {
        "id": f"{site.rid.id}/extensions/onedeploy",
        "name": "onedeploy",
        "type": "Microsoft.Web/sites/extensions",
        "properties": {
            "id": latest.id if latest else None,
            "status": latest.status if latest else None,
            "complete": latest.complete if latest else None,
            "deployer": latest.kind if latest else None,
        },
    }


def sync_triggers(state: SiteState) -> None:
    """Index what the last successful deployment contains, as the platform does on a trigger sync."""
    functions = list(state.deployed_functions or [])
    state.indexed_functions = functions
    triggers = {f.trigger for f in functions}
    if "eventGridTrigger" in triggers:
        state.system_keys.setdefault("eventgrid_extension", new_key()[:56])
    if triggers & DURABLE_TRIGGERS:
        state.system_keys.setdefault("durabletask_extension", new_key()[:56])


# --- keys of other resource types ----------------------------------------------------------


def list_keys_body(res: Resource) -> dict[str, Any] | None:
    t = res.rid.type_key
    s = res.secrets
    if t == "microsoft.storage/storageaccounts":
        return {
            "keys": [
                {"keyName": "key1", "value": s["key1"], "permissions": "Full", "creationTime": _iso()},
                {"keyName": "key2", "value": s["key2"], "permissions": "Full", "creationTime": _iso()},
            ]
        }
    if t == "microsoft.eventgrid/topics":
        return {"key1": s["key1"], "key2": s["key2"]}
    if t == "microsoft.documentdb/databaseaccounts":
        return {
            k: s[k]
            for k in (
                "primaryMasterKey",
                "secondaryMasterKey",
                "primaryReadonlyMasterKey",
                "secondaryReadonlyMasterKey",
            )
        }
    if t == "microsoft.devices/iothubs":
        return {"value": [iothub_key(res, rule) for rule in IOTHUB_RULES], "nextLink": None}
    return None


def iothub_key(hub: Resource, key_name: str) -> dict[str, Any] | None:
    for rule, rights in IOTHUB_RULES.items():
        if rule.lower() == key_name.lower():
            return {
                "keyName": rule,
                "primaryKey": hub.secrets[f"{rule}:primary"],
                "secondaryKey": hub.secrets[f"{rule}:secondary"],
                "rights": rights,
            }
    return None
