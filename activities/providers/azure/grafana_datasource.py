"""L5: the hot-reader datasource in Managed Grafana (JSON API plugin, proxy access), calling the
hot reader with the inter-cloud token in the `X-Inter-Cloud-Token` header, kept in
`secureJsonData` (Grafana never returns it). Through Grafana's HTTP API with an Entra token for
the Grafana application (`ce34e7e5-.../.default`, not `https://grafana.azure.com`).

Reconcile: the datasource is looked up by name and created or updated; because the secure header
value cannot be read back, it is rewritten only when the token changed (a hash of it is kept in
`jsonData.tokenSha256`). Its URL is a late-bound setting: the datasource is created with what is
known, and `apply_settings` (propagation) fills the URL in once the reader is deployed.
A datasource carries no tags: it is its workspace's, whose tags name the owner (another twin's
workspace: refused, and its datasource never deleted).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from azure.core import PipelineClient
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.dashboard import DashboardManagementClient

from activities.providers.azure._common import clouds, deployer_principal_id, get_or_none, mgmt
from activities.providers.azure.role_assignment import assign
from activities.providers.grafana import datasource_body, needs_write
from activities.providers.typed import TypedProvider, creating, may_delete, require_own, to_create
from activities.registry import register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import EnsureResult, ReadResult, ResourceCall
from shared.resources.azure import AzureGrafanaDatasourceConfig

GRAFANA_SCOPE = "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f/.default"
GRAFANA_ADMIN_ROLE = "22926164-76b3-42b3-bc55-97df8dab3e41"


class GrafanaApi:
    def __init__(self, config: AzureGrafanaDatasourceConfig) -> None:
        graf = get_or_none(lambda: mgmt(DashboardManagementClient).grafana.get(config.resource_group, config.grafana))
        if graf is None:
            raise PermanentError(f"Managed Grafana {config.grafana} does not exist: deploy L5's Grafana first")
        endpoint = graf.properties.endpoint if graf.properties else None
        if not endpoint:
            raise TransientError(f"Managed Grafana {config.grafana}: no endpoint yet")
        cl = clouds()
        host = urllib.parse.urlparse(str(endpoint)).hostname or ""
        if cl.is_sandbox and host not in ("127.0.0.1", "localhost"):
            raise PermanentError(
                f"the sandbox does not serve the Managed Grafana data plane ({endpoint}/api/datasources); "
                "the datasource cannot be created locally"
            )
        self.endpoint = str(endpoint).rstrip("/")
        self.workspace_id = str(graf.id)
        self.tags = dict(graf.tags or {})
        self.client = PipelineClient(self.endpoint, policies=[
            RetryPolicy(), BearerTokenCredentialPolicy(cl.azure_credential(), GRAFANA_SCOPE)], **cl.azure_client_kwargs())

    def send(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.send_request(HttpRequest(method, self.endpoint + path, json=body))
        if response.status_code in (429, 500, 502, 503, 504):
            raise TransientError(f"Grafana {method} {path}: HTTP {response.status_code}")
        if response.status_code == 403:
            raise TransientError(f"Grafana {method} {path}: 403, the Grafana Admin role is not effective yet")
        return response

    def find(self, name: str) -> dict[str, Any] | None:
        response = self.send("GET", f"/api/datasources/name/{urllib.parse.quote(name, safe='')}")
        if response.status_code == 404:
            return None
        _check(response, "read the datasource")
        return dict(response.json())


def _check(response: Any, what: str) -> None:
    if not 200 <= response.status_code < 300:
        raise PermanentError(f"Grafana could not {what} (HTTP {response.status_code})")


@register("azure", "grafana-datasource")
class GrafanaDatasource(TypedProvider[AzureGrafanaDatasourceConfig]):
    model = AzureGrafanaDatasourceConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._reconcile(call, decide=True)

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self._reconcile(call, decide=False)  # the creation `ensure` decided on

    def _reconcile(self, call: ResourceCall, decide: bool) -> EnsureResult:
        """Create or update; with `decide`, a missing datasource is first only decided on (`to_create`)."""
        config = self.config(call)
        url, token = call.settings.get(Setting.DATASOURCE_URL), call.settings.get(Setting.DATASOURCE_TOKEN)
        api = GrafanaApi(config)
        require_own(call, config, api.tags, f"Managed Grafana {config.grafana}")
        # Grafana's API needs the deployer to be a Grafana Admin of the workspace.
        assign(api.workspace_id, GRAFANA_ADMIN_ROLE, deployer_principal_id())
        current = api.find(config.name)
        wanted = datasource_body(config.name, url, token, config.type, config.access, current)
        if current is None and decide:
            return to_create(f"Grafana datasource {config.name} is being created")
        if not needs_write(current, wanted):
            return EnsureResult("created" if creating(call) else "unchanged")
        if current is None:
            _check(api.send("POST", "/api/datasources", wanted), "create the datasource")
            return EnsureResult("created")
        _check(api.send("PUT", f"/api/datasources/uid/{current.get('uid')}", wanted), "update the datasource")
        return EnsureResult("created" if creating(call) else "updated")

    def apply_settings(self, call: ResourceCall) -> bool:
        return self._reconcile(call, decide=False).action != "unchanged"

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        current = GrafanaApi(config).find(config.name)
        return ReadResult(current is not None, details={"uid": (current or {}).get("uid")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        try:
            api = GrafanaApi(config)
        except (TransientError, PermanentError):
            return EnsureResult("absent")  # no Grafana (or none reachable here): nothing to delete
        if not may_delete(call, config, api.tags, f"Managed Grafana {config.grafana}"):
            return EnsureResult("absent")
        current = api.find(config.name)
        if current is None:
            return EnsureResult("absent")
        _check(api.send("DELETE", f"/api/datasources/uid/{current.get('uid')}"), "delete the datasource")
        return EnsureResult("deleted")
