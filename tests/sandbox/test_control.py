"""The control endpoint: request log (and counting mutating calls), resources, reset, profile, hosts."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import Sku, StorageAccountCreateParameters
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import AppServicePlan, Site, SkuDescription

from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox

LOC = "westeurope"
MUTATING = {"PUT", "POST", "PATCH", "DELETE"}


def _client(sb: Sandbox, cls: type) -> Any:
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    return cls(
        cred, sb.ctx.subscription_id, base_url=sb.arm_url, connection_verify=sb.ca_file, polling_interval=0
    )


def _requests(sb: Sandbox, since: int = 0) -> list[dict[str, Any]]:
    r = requests.get(f"{sb.control_url}/requests", params={"since": since}, timeout=10)
    assert r.status_code == 200
    return r.json()


def _mutating(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["method"], r["url"].split("?")[0].rsplit("/", 1)[-1]) for r in records if r["mutating"]]


def test_request_log_shape_tail_and_mutating_count(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    rm = _client(sb, ResourceManagementClient)
    msi = _client(sb, ManagedServiceIdentityClient)
    st = _client(sb, StorageManagementClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    first = _requests(sb)
    assert len(first) == 1
    rec = first[0]
    assert set(rec) == {"seq", "cloud", "method", "url", "status", "ms", "operation", "mutating", "at"}
    assert rec["mutating"] is True
    assert (rec["cloud"], rec["method"], rec["status"]) == ("azure", "PUT", 201)
    assert rec["url"].startswith(sb.arm_url + "/subscriptions/") and rec["ms"] >= 0
    mark = rec["seq"]
    # A known mix: 2 identity PUTs, a storage create (PUT + a Location poll), one listKeys POST
    # (a read, though a POST), reads, one DELETE.
    msi.user_assigned_identities.create_or_update("rg", "a", {"location": LOC})
    msi.user_assigned_identities.create_or_update("rg", "b", {"location": LOC})
    msi.user_assigned_identities.get("rg", "a")
    list(msi.user_assigned_identities.list_by_resource_group("rg"))
    st.storage_accounts.begin_create(
        "rg",
        "stcount",
        StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOC),
    ).result()
    st.storage_accounts.list_keys("rg", "stcount")
    msi.user_assigned_identities.delete("rg", "b")
    tail = _requests(sb, mark)
    assert all(r["seq"] > mark for r in tail)
    assert _mutating(tail) == [("PUT", "a"), ("PUT", "b"), ("PUT", "stcount"), ("DELETE", "b")]
    assert [r["method"] for r in tail if r["method"] in MUTATING and not r["mutating"]] == ["POST"]
    assert len(tail) == 8  # plus GET, list GET, Location poll GET
    # The storage create was a long-running operation: listed with its modelled length.
    operations = requests.get(f"{sb.control_url}/operations", timeout=10).json()
    created = [o for o in operations if o["resourceId"].lower().endswith("/storageaccounts/stcount")]
    assert [(o["kind"], o["type"], o["status"]) for o in created] == [
        ("put", "microsoft.storage/storageaccounts", "Succeeded")]
    assert created[0]["dueAt"] >= created[0]["startedAt"] > 0
    # A read-only pass (what a no-op redeploy should look like) makes zero mutating calls.
    mark = tail[-1]["seq"]
    msi.user_assigned_identities.get("rg", "a")
    st.storage_accounts.get_properties("rg", "stcount")
    rm.resource_groups.check_existence("rg")
    assert _mutating(_requests(sb, mark)) == []
    # Filters: by cloud and by whether the call mutates.
    everything = _requests(sb)
    only_mutating = requests.get(f"{sb.control_url}/requests", params={"mutating": "true"}, timeout=10).json()
    assert only_mutating == [r for r in everything if r["mutating"]] and len(only_mutating) == 5
    assert requests.get(f"{sb.control_url}/requests", params={"cloud": "aws"}, timeout=10).json() == []
    bad = requests.get(f"{sb.control_url}/requests", params={"mutating": "yes"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("mutating")
    # Control calls themselves are not cloud traffic and are not logged.
    assert all(not r["url"].startswith(sb.control_url) for r in _requests(sb))
    bad = requests.get(f"{sb.control_url}/requests", params={"since": "x"}, timeout=10)
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]


def test_resources_and_reset(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    rm = _client(sb, ResourceManagementClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    mi = _client(sb, ManagedServiceIdentityClient).user_assigned_identities.create_or_update(
        "rg", "mi", {"location": LOC}
    )
    scope = f"/subscriptions/{sb.ctx.subscription_id}/resourceGroups/rg"
    _client(sb, AuthorizationManagementClient).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sb.ctx.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c",
            principal_id=mi.principal_id,
        ),
    )
    listing = requests.get(f"{sb.control_url}/resources", timeout=10).json()
    types = sorted(r["type"] for r in listing["azure"])
    assert types == [
        "Microsoft.Authorization/roleAssignments",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.Resources/resourceGroups",
    ]
    assert all(r["provisioningState"] in ("Succeeded", None) for r in listing["azure"])
    assert "aws" not in listing  # this sandbox runs without AWS
    before = sb.ctx.request_log.last_seq()
    r = requests.post(f"{sb.control_url}/reset", timeout=30)
    assert r.status_code == 200
    assert requests.get(f"{sb.control_url}/resources", timeout=10).json() == {"azure": []}
    assert not sb.ctx.role_assignments.allows(
        mi.principal_id, scope, {"b24988ac-6180-42a0-ab88-20f7382dd24c"}
    )
    assert _requests(sb) == []
    assert rm.resource_groups.check_existence("rg") is False
    assert sb.ctx.request_log.last_seq() > before  # sequence numbers keep increasing after a reset


def test_session_sandbox_lists_aws_resources_too(sandbox: Sandbox) -> None:
    listing = requests.get(f"{sandbox.control_url}/resources", timeout=30).json()
    assert isinstance(listing["azure"], list)
    if sandbox.aws is not None:
        assert isinstance(listing["aws"], list)


def test_profile_switch(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    r = requests.post(f"{sb.control_url}/profile", json={"name": "flaky", "seed": 42}, timeout=10)
    assert r.status_code == 200 and r.json()["name"] == "flaky" and r.json()["seed"] == 42
    assert sb.ctx.faults.profile.name == "flaky" and sb.ctx.faults.seed == 42
    assert requests.get(f"{sb.control_url}/profile", timeout=10).json()["throttle_rate"] > 0
    bad = requests.post(f"{sb.control_url}/profile", json={"name": "chaos"}, timeout=10)
    assert (
        bad.status_code == 400
        and "name" in bad.json()["error"]["message"]
        and "instant" in bad.json()["error"]["message"]
    )
    bad = requests.post(f"{sb.control_url}/profile", json={"name": "instant", "seed": "1"}, timeout=10)
    assert bad.status_code == 400 and "seed" in bad.json()["error"]["message"]
    bad = requests.post(f"{sb.control_url}/profile", data=b"[", timeout=10)
    assert bad.status_code == 400
    requests.post(f"{sb.control_url}/profile", json={"name": "instant"}, timeout=10)
    assert sb.ctx.faults.profile.name == "instant"


def test_hosts_registration(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    _client(sb, ResourceManagementClient).resource_groups.create_or_update("rg", {"location": LOC})
    web = _client(sb, WebSiteManagementClient)
    plan = web.app_service_plans.begin_create_or_update(
        "rg", "plan", AppServicePlan(location=LOC, sku=SkuDescription(name="EP1"), reserved=True)
    ).result()
    site = web.web_apps.begin_create_or_update(
        "rg", "func-a", Site(location=LOC, server_farm_id=plan.id)
    ).result()
    url = f"{sb.control_url}/hosts"
    r = requests.post(
        url, json={"site": "func-a", "base_url": "http://127.0.0.1:7071/", "master_key": "mk"}, timeout=10
    )
    assert r.status_code == 201 and r.json()["site"] == site.id.lower()
    assert sb.ctx.function_hosts[site.id.lower()].base_url == "http://127.0.0.1:7071"
    assert sb.ctx.function_hosts[site.id.lower()].master_key == "mk"
    assert requests.get(url, timeout=10).json() == {site.id.lower(): {"base_url": "http://127.0.0.1:7071"}}
    r = requests.post(url, json={"site": site.id, "base_url": "http://127.0.0.1:7072"}, timeout=10)
    assert r.status_code == 201 and sb.ctx.function_hosts[site.id.lower()].master_key is None
    for body, field in (
        ({"base_url": "http://x"}, "site"),
        ({"site": "func-a", "base_url": "ftp://x"}, "base_url"),
        ({"site": "func-a", "base_url": "http://x", "master_key": 5}, "master_key"),
    ):
        bad = requests.post(url, json=body, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith(field)
    missing = requests.post(url, json={"site": "nope", "base_url": "http://x"}, timeout=10)
    assert missing.status_code == 404
    # Deleting the site forgets its host.
    web.web_apps.delete("rg", "func-a")
    assert site.id.lower() not in sb.ctx.function_hosts


def test_services_label_operations_and_mutation(tmp_path: Any) -> None:
    """A handler (`label_request`) or an app-wide classifier names the operation and whether it
    mutates; the classifier also labels calls refused by an injected fault."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from sandbox.core.context import SandboxContext
    from sandbox.core.http import REQUEST_CLASSIFIER_KEY, label_request, sandbox_middleware
    from sandbox.core.profiles import Profile

    ctx = SandboxContext(state_dir=tmp_path)

    async def read_via_post(request: web.Request) -> web.Response:
        label_request(request, operation="svc:Describe", mutating=False)
        return web.json_response({})

    async def plain(request: web.Request) -> web.Response:
        return web.json_response({})

    def classify(request: web.Request) -> tuple[str | None, bool | None]:
        target = request.headers.get("X-Target")
        return (f"svc:{target}", target == "Put") if target else (None, None)

    async def run() -> None:
        app = web.Application(middlewares=[sandbox_middleware(ctx, "aws")])
        app[REQUEST_CLASSIFIER_KEY] = classify
        app.router.add_post("/describe", read_via_post)
        app.router.add_post("/", plain)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as s:
                await (await s.post(f"http://127.0.0.1:{port}/describe")).read()
                await (await s.post(f"http://127.0.0.1:{port}/", headers={"X-Target": "Put"})).read()
                await (await s.post(f"http://127.0.0.1:{port}/", headers={"X-Target": "Get"})).read()
                await (await s.post(f"http://127.0.0.1:{port}/?code=s3cret")).read()
                ctx.faults.profile = Profile("throttle", throttle_rate=1.0)
                r = await s.post(f"http://127.0.0.1:{port}/", headers={"X-Target": "Put"})
                assert r.status == 429
        finally:
            await runner.cleanup()

    asyncio.run(run())
    got = [(r.operation, r.mutating, r.status) for r in ctx.request_log.since(0)]
    assert got == [
        ("svc:Describe", False, 200),
        ("svc:Put", True, 200),
        ("svc:Get", False, 200),
        (None, True, 200),
        ("svc:Put", True, 429),
    ]
    assert "s3cret" not in ctx.request_log.since(0)[3].url
