"""The sandbox's Azure Managed Grafana data plane (`/api/datasources`) over plain HTTPS with Entra
bearer tokens, as the deployer's datasource activity calls it.

The workspace and the "Grafana Admin" role assignment are made through ARM with
azure-mgmt-dashboard and azure-mgmt-authorization.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.dashboard import DashboardManagementClient
from azure.mgmt.dashboard.models import (
    ManagedGrafana,
    ManagedGrafanaProperties,
    ManagedServiceIdentity,
    ResourceSku,
)
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.core.auth import SandboxCredential, make_token
from sandbox.server import AZURE_SERVICES, Sandbox

GRAFANA_SCOPE = "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f/.default"
GRAFANA_ADMIN = "22926164-76b3-42b3-bc55-97df8dab3e41"
GRAFANA_EDITOR = "a79a5197-3a5c-4973-a920-486035ffd60f"
ADMIN = "0a0a0a0a-0000-4000-8000-00000000a001"
EDITOR = "0a0a0a0a-0000-4000-8000-00000000e001"
STRANGER = "0a0a0a0a-0000-4000-8000-00000000f001"
MINE = (("sandbox.cosmos", "/cosmos"), ("sandbox.iothub", "/iothub"), ("sandbox.grafana", "/grafana"))


class ServicesSandbox(Sandbox):
    """The sandbox with this task's data planes mounted one line each, as `sandbox/server.py`
    mounts its services (skipped where the server already mounts them)."""

    def build_azure_app(self) -> Any:
        root = super().build_azure_app()
        mounted = {prefix for _, prefix in AZURE_SERVICES}
        for name, prefix in MINE:
            if prefix not in mounted:
                module = importlib.import_module(name)
                module.install(self.ctx)
                root.add_subapp(prefix + "/", module.create_app(self.ctx))
        return root


def mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]), e["subscription_id"], base_url=e["arm"], connection_verify=e["ca_file"], polling_interval=0
    )


@dataclass
class Env:
    sb: ServicesSandbox
    rg: str
    workspace: Any

    @property
    def endpoint(self) -> str:
        return str(self.workspace.properties.endpoint)

    def call(self, method: str, path: str, principal: str = ADMIN, scope: str = GRAFANA_SCOPE, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {make_token(principal, scope)}"} if principal else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.request(method, self.endpoint + path, headers=headers, verify=self.sb.ca_file, timeout=10, **kwargs)


def _grant(sb: Sandbox, scope: str, principal: str, role: str) -> None:
    sub = sb.endpoints["azure"]["subscription_id"]
    mgmt(sb, AuthorizationManagementClient).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        # mypy reads another API version's stub; at runtime the default API version's model is flat.
        RoleAssignmentCreateParameters(  # type: ignore[call-arg]
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )


def _workspace(sb: Sandbox, rg: str, name: str) -> Any:
    return mgmt(sb, DashboardManagementClient).grafana.begin_create(
        rg,
        name,
        ManagedGrafana(
            location="westeurope",
            sku=ResourceSku(name="Standard"),
            identity=ManagedServiceIdentity(type="SystemAssigned"),
            properties=ManagedGrafanaProperties(api_key="Enabled"),
        ),
    ).result()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sb = ServicesSandbox(Path(tmp_path_factory.mktemp("grafana")), with_aws=False, with_blob=False)
    sb.start()
    try:
        rg = "rg-grafana"
        mgmt(sb, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
        ws = _workspace(sb, rg, f"graf-{uuid.uuid4().hex[:6]}")
        _grant(sb, ws.id, ADMIN, GRAFANA_ADMIN)
        _grant(sb, ws.id, EDITOR, GRAFANA_EDITOR)
        yield Env(sb, rg, ws)
    finally:
        sb.stop()


def _body(name: str, token: str = "tok-1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "marcusolsson-json-datasource",
        "access": "proxy",
        "url": "https://127.0.0.1:9/api/hot-reader",
        "isDefault": False,
        "jsonData": {"httpHeaderName1": "X-Inter-Cloud-Token"},
        "secureJsonData": {"httpHeaderValue1": token},
        **extra,
    }


def test_endpoint_from_arm_points_at_the_sandbox(env: Env) -> None:
    assert env.endpoint == f"{env.sb.arm_url}/grafana/{env.workspace.name}"
    r = requests.get(env.endpoint + "/api/health", verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 200 and r.json()["database"] == "ok"


def test_datasource_create_read_update_delete(env: Env) -> None:
    created = env.call("POST", "/api/datasources", json=_body("Hot-Reader-Data"))
    assert created.status_code == 200, created.text
    out = created.json()
    assert out["message"] == "Datasource added" and out["name"] == "Hot-Reader-Data"
    ds = out["datasource"]
    uid = ds["uid"]
    assert ds["secureJsonFields"] == {"httpHeaderValue1": True}
    assert "secureJsonData" not in ds and "tok-1" not in created.text

    by_name = env.call("GET", "/api/datasources/name/Hot-Reader-Data")
    by_uid = env.call("GET", f"/api/datasources/uid/{uid}")
    by_id = env.call("GET", f"/api/datasources/{ds['id']}")
    assert by_name.json() == by_uid.json() == by_id.json()
    assert by_uid.json()["jsonData"] == {"httpHeaderName1": "X-Inter-Cloud-Token"} and "tok-1" not in by_uid.text
    assert [d["name"] for d in env.call("GET", "/api/datasources").json()] == ["Hot-Reader-Data"]

    # An update without secureJsonData keeps the secure value; with it, replaces it (never shown).
    kept = env.call("PUT", f"/api/datasources/uid/{uid}", json={**_body("Hot-Reader-Data"), "secureJsonData": None, "url": "https://x/y"})
    assert kept.status_code == 200 and kept.json()["message"] == "Datasource updated"
    assert kept.json()["datasource"]["secureJsonFields"] == {"httpHeaderValue1": True}
    assert kept.json()["datasource"]["version"] == 2 and kept.json()["datasource"]["url"] == "https://x/y"
    ws_state = env.sb.ctx.hooks_for("Microsoft.Dashboard/grafana").owner.workspace(env.workspace.name)  # type: ignore[union-attr]
    assert ws_state.find(uid=uid).secure == {"httpHeaderValue1": "tok-1"}
    rotated = env.call("PUT", f"/api/datasources/uid/{uid}", json=_body("Hot-Reader-Data", token="tok-2"))
    assert rotated.status_code == 200 and "tok-2" not in rotated.text
    assert ws_state.find(uid=uid).secure == {"httpHeaderValue1": "tok-2"}
    stale = env.call("PUT", f"/api/datasources/uid/{uid}", json=_body("Hot-Reader-Data", version=1))
    assert stale.status_code == 409

    deleted = env.call("DELETE", f"/api/datasources/uid/{uid}")
    assert deleted.status_code == 200 and deleted.json() == {"message": "Data source deleted", "id": ds["id"]}
    missing = env.call("GET", f"/api/datasources/uid/{uid}")
    assert missing.status_code == 404 and missing.json()["message"] == "Data source not found"
    assert env.call("DELETE", "/api/datasources/name/Hot-Reader-Data").status_code == 404


def test_conflicts_and_bad_bodies(env: Env) -> None:
    first = env.call("POST", "/api/datasources", json=_body("dup", uid="fixed-uid"))
    assert first.status_code == 200 and first.json()["datasource"]["uid"] == "fixed-uid"
    same_name = env.call("POST", "/api/datasources", json=_body("dup"))
    assert same_name.status_code == 409 and "same name" in same_name.json()["message"]
    same_uid = env.call("POST", "/api/datasources", json=_body("other", uid="fixed-uid"))
    assert same_uid.status_code == 409 and "same uid" in same_uid.json()["message"]
    for bad in ({"type": "x"}, {"name": "n"}, _body("n", access="sideways"), _body("n", uid="bad uid!")):
        r = env.call("POST", "/api/datasources", json=bad)
        assert r.status_code == 400, bad
    r = env.call("POST", "/api/datasources", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert env.call("DELETE", "/api/datasources/name/dup").json()["message"] == "Data source deleted"


def test_auth_401_and_403(env: Env) -> None:
    assert env.call("GET", "/api/datasources", principal="").status_code == 401
    wrong_audience = env.call("GET", "/api/datasources", scope="https://management.azure.com/.default")
    assert wrong_audience.status_code == 401 and "audience" in wrong_audience.text
    for who in (EDITOR, STRANGER):
        r = env.call("POST", "/api/datasources", principal=who, json=_body(f"x-{who[-4:]}"))
        assert r.status_code == 403 and r.json()["title"] == "Access denied"
    garbled = requests.get(env.endpoint + "/api/datasources", headers={"Authorization": "Bearer not-a-jwt"}, verify=env.sb.ca_file, timeout=10)
    assert garbled.status_code == 401


def test_deleted_workspace_is_404_and_roles_are_per_workspace(env: Env) -> None:
    other = _workspace(env.sb, env.rg, f"graf-{uuid.uuid4().hex[:6]}")
    url = f"{other.properties.endpoint}/api/datasources"
    token = {"Authorization": f"Bearer {make_token(ADMIN, GRAFANA_SCOPE)}"}
    # The admin of the first workspace is nobody here.
    assert requests.get(url, headers=token, verify=env.sb.ca_file, timeout=10).status_code == 403
    _grant(env.sb, f"/subscriptions/{env.sb.ctx.subscription_id}/resourceGroups/{env.rg}", ADMIN, GRAFANA_ADMIN)
    assert requests.get(url, headers=token, verify=env.sb.ca_file, timeout=10).status_code == 200  # inherited from the group
    mgmt(env.sb, DashboardManagementClient).grafana.begin_delete(env.rg, other.name).result()
    assert requests.get(url, headers=token, verify=env.sb.ca_file, timeout=10).status_code == 404
