"""ARM's generic resource store through the real SDK clients: resource groups, identities,
storage (202 + Location), containers, errors (401, 404 shapes, 400 validation, 409 taken),
case-insensitive paths, lists, nested deletes and hooks."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import BlobContainer, Sku, StorageAccountCreateParameters

from sandbox.core.auth import SandboxCredential, make_token
from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"


def _storage_params() -> StorageAccountCreateParameters:
    return StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOC)


def _raw(
    sb: Sandbox, method: str, path: str, body: Any = None, token: str | None = None, **kw: Any
) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {token or make_token(sb.endpoints['azure']['deployer_principal_id'], ARM_SCOPE)}"
    }
    headers.update(kw.pop("headers", {}))
    return requests.request(
        method, sb.arm_url + path, json=body, headers=headers, verify=sb.ca_file, timeout=10, **kw
    )


def _log_since(sb: Sandbox, seq: int) -> list[tuple[str, str, int]]:
    return [
        (r.method, r.url.split("?")[0].split(sb.arm_url, 1)[-1], r.status)
        for r in sb.ctx.request_log.since(seq)
    ]


def test_resource_group_create_exists_delete_location_lro(
    sandbox: Sandbox, mgmt_client: Any, unique_name: Any
) -> None:
    rm = mgmt_client(ResourceManagementClient)
    rg = unique_name("rg")
    seq = sandbox.ctx.request_log.last_seq()
    created = rm.resource_groups.create_or_update(rg, {"location": LOC, "tags": {"twin": "t1"}})
    assert created.properties.provisioning_state == "Succeeded"
    assert created.tags == {"twin": "t1"}
    assert rm.resource_groups.check_existence(rg) is True
    assert rm.resource_groups.get(rg).location == LOC
    # Same PUT again: 200 (update) rather than 201.
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    assert rm.resource_groups.check_existence(unique_name("nope")) is False
    rm.resource_groups.begin_delete(rg).result()
    assert rm.resource_groups.check_existence(rg) is False
    calls = _log_since(sandbox, seq)
    sub = sandbox.ctx.subscription_id
    assert calls[0] == ("PUT", f"/subscriptions/{sub}/resourcegroups/{rg}", 201)
    assert ("PUT", f"/subscriptions/{sub}/resourcegroups/{rg}", 200) in calls
    # RG delete answers 202 + Location; the SDK polls the Location (202 until done, then 204).
    delete_at = calls.index(("DELETE", f"/subscriptions/{sub}/resourcegroups/{rg}", 202))
    assert "/operationResults/" in calls[delete_at + 1][1] and calls[delete_at + 1][0] == "GET"


def test_missing_resources_raise_arm_shaped_404(sandbox: Sandbox, mgmt_client: Any, unique_name: Any) -> None:
    rm = mgmt_client(ResourceManagementClient)
    st = mgmt_client(StorageManagementClient)
    missing_rg = unique_name("rg")
    with pytest.raises(ResourceNotFoundError) as err:
        rm.resource_groups.get(missing_rg)
    assert err.value.error is not None and err.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        st.storage_accounts.get_properties(missing_rg, "acct")
    assert err.value.error.code == "ResourceGroupNotFound"
    rg = unique_name("rg")
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    with pytest.raises(ResourceNotFoundError) as err:
        st.storage_accounts.get_properties(rg, "nosuchacct")
    assert err.value.error.code == "ResourceNotFound"
    assert "Microsoft.Storage/storageAccounts/nosuchacct" in err.value.error.message
    # A child under a missing parent is refused as ARM does.
    with pytest.raises(ResourceNotFoundError) as err:
        st.blob_containers.create(rg, "nosuchacct", "c1", BlobContainer())
    assert err.value.error.code == "ParentResourceNotFound"
    # Creating in a missing group is refused too.
    with pytest.raises(ResourceNotFoundError) as err:
        st.storage_accounts.begin_create(missing_rg, "acctx1", _storage_params()).result()
    assert err.value.error.code == "ResourceGroupNotFound"


def test_missing_or_garbled_bearer_gets_401(sandbox: Sandbox, unique_name: Any) -> None:
    class Garbled:
        def get_token(self, *scopes: str, **kw: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken("not-a-jwt", 2**31)

    rm = ResourceManagementClient(
        Garbled(), sandbox.ctx.subscription_id, base_url=sandbox.arm_url, connection_verify=sandbox.ca_file
    )
    with pytest.raises(ClientAuthenticationError) as err:
        rm.resource_groups.create_or_update(unique_name("rg"), {"location": LOC})
    assert err.value.status_code == 401
    assert err.value.error.code == "InvalidAuthenticationToken"
    r = requests.get(
        f"{sandbox.arm_url}/subscriptions/{sandbox.ctx.subscription_id}/resourcegroups?api-version=2025-04-01",
        verify=sandbox.ca_file,
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "not-a-jwt" not in r.text


def test_expired_token_is_refused(sandbox: Sandbox) -> None:
    expired = make_token(sandbox.endpoints["azure"]["deployer_principal_id"], ARM_SCOPE, expires_on=1000)
    r = _raw(
        sandbox,
        "GET",
        f"/subscriptions/{sandbox.ctx.subscription_id}/resourcegroups?api-version=2025-04-01",
        token=expired,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_token_for_another_audience_is_refused(sandbox: Sandbox, unique_name: Any) -> None:
    adt_token = make_token(
        sandbox.endpoints["azure"]["deployer_principal_id"], "https://digitaltwins.azure.net/.default"
    )
    r = _raw(
        sandbox,
        "GET",
        f"/subscriptions/{sandbox.ctx.subscription_id}/resourcegroups?api-version=2025-04-01",
        token=adt_token,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "https://digitaltwins.azure.net" in r.json()["error"]["message"]
    rm = ResourceManagementClient(
        SandboxCredential(sandbox.endpoints["azure"]["deployer_principal_id"]),
        sandbox.ctx.subscription_id,
        base_url=sandbox.arm_url,
        connection_verify=sandbox.ca_file,
        credential_scopes=["https://digitaltwins.azure.net/.default"],
    )
    with pytest.raises(ClientAuthenticationError):
        rm.resource_groups.create_or_update(unique_name("rg"), {"location": LOC})


def test_api_version_required_and_paths_case_insensitive(sandbox: Sandbox, unique_name: Any) -> None:
    sub = sandbox.ctx.subscription_id
    rg = unique_name("rg")
    r = _raw(sandbox, "PUT", f"/subscriptions/{sub}/resourcegroups/{rg}", {"location": LOC})
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = _raw(
        sandbox, "PUT", f"/subscriptions/{sub}/resourcegroups/{rg}?api-version=2025-04-01", {"location": LOC}
    )
    assert r.status_code == 201
    r = _raw(sandbox, "GET", f"/subscriptions/{sub}/RESOURCEGROUPS/{rg.upper()}?api-version=2025-04-01")
    assert r.status_code == 200
    assert r.json()["name"] == rg and r.json()["id"] == f"/subscriptions/{sub}/resourceGroups/{rg}"
    r = _raw(
        sandbox,
        "PUT",
        f"/subscriptions/{sub}/resourceGroups/{rg.upper()}/providers/MICROSOFT.MANAGEDIDENTITY/userAssignedIdentities/mi1?api-version=2024-11-30",
        {"location": LOC},
    )
    assert r.status_code == 201
    r = _raw(
        sandbox,
        "GET",
        f"/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ManagedIdentity/USERASSIGNEDIDENTITIES/MI1?api-version=2024-11-30",
    )
    assert r.status_code == 200 and r.json()["properties"]["principalId"]
    r = _raw(
        sandbox, "GET", f"/subscriptions/{sub}/resourcegroups/{rg}?api-version=2025-04-01&x=1", headers={}
    )
    assert r.headers.get("ETag")
    r = _raw(sandbox, "GET", f"/subscriptions/not-our-sub/resourcegroups/{rg}?api-version=2025-04-01")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SubscriptionNotFound"
    r = _raw(
        sandbox, "PUT", f"/subscriptions/{sub}/resourcegroups/{rg}?api-version=2025-04-01", data=b"{not json"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequestContent"


def test_managed_identity_fields_are_stable(sandbox: Sandbox, mgmt_client: Any, unique_name: Any) -> None:
    rm = mgmt_client(ResourceManagementClient)
    msi = mgmt_client(ManagedServiceIdentityClient)
    rg = unique_name("rg")
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    mi = msi.user_assigned_identities.create_or_update(rg, "id-twin", {"location": LOC})
    assert mi.principal_id and mi.client_id and mi.tenant_id == sandbox.ctx.tenant_id
    again = msi.user_assigned_identities.create_or_update(
        rg, "id-twin", {"location": LOC, "tags": {"a": "b"}}
    )
    assert (again.principal_id, again.client_id) == (mi.principal_id, mi.client_id)
    assert msi.user_assigned_identities.get(rg, "id-twin").principal_id == mi.principal_id
    msi.user_assigned_identities.delete(rg, "id-twin")
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get(rg, "id-twin")
    # Deleting what is gone is not an error (204).
    msi.user_assigned_identities.delete(rg, "id-twin")


def test_storage_account_202_location_keys_and_validation(
    sandbox: Sandbox, mgmt_client: Any, unique_name: Any
) -> None:
    rm = mgmt_client(ResourceManagementClient)
    st = mgmt_client(StorageManagementClient)
    rg = unique_name("rg")
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    acct = "st" + unique_name("x").replace("-", "")[:18]
    seq = sandbox.ctx.request_log.last_seq()
    account = st.storage_accounts.begin_create(rg, acct, _storage_params()).result()
    assert account.provisioning_state == "Succeeded"
    assert account.primary_endpoints.blob == f"https://{acct}.blob.core.windows.net/"
    calls = _log_since(sandbox, seq)
    assert calls[0][0] == "PUT" and calls[0][2] == 202
    assert calls[1][0] == "GET" and "/operationResults/" in calls[1][1] and calls[1][2] == 200
    keys = st.storage_accounts.list_keys(rg, acct)
    assert [k.key_name for k in keys.keys_property] == ["key1", "key2"]
    assert keys.keys_property[0].value != keys.keys_property[1].value
    assert st.storage_accounts.list_keys(rg, acct).keys_property[0].value == keys.keys_property[0].value
    container = st.blob_containers.create(rg, acct, "hot", BlobContainer())
    assert container.name == "hot"
    assert st.blob_containers.get(rg, acct, "hot").name == "hot"
    # Names: ARM's rule and global uniqueness.
    with pytest.raises(HttpResponseError) as err:
        st.storage_accounts.begin_create(rg, "Bad-Name", _storage_params()).result()
    assert err.value.status_code == 400 and err.value.error.code == "AccountNameInvalid"
    other_rg = unique_name("rg")
    rm.resource_groups.create_or_update(other_rg, {"location": LOC})
    with pytest.raises(ResourceExistsError) as err:
        st.storage_accounts.begin_create(other_rg, acct, _storage_params()).result()
    assert err.value.error.code == "StorageAccountAlreadyTaken"
    # The account and its container go with the group.
    rm.resource_groups.begin_delete(rg).result()
    with pytest.raises(ResourceNotFoundError):
        st.blob_containers.get(rg, acct, "hot")
    # The name is free again.
    st.storage_accounts.begin_create(other_rg, acct, _storage_params()).result()
    st.storage_accounts.delete(other_rg, acct)


def test_lists_by_group_and_type(sandbox: Sandbox, mgmt_client: Any, unique_name: Any) -> None:
    rm = mgmt_client(ResourceManagementClient)
    msi = mgmt_client(ManagedServiceIdentityClient)
    rg1, rg2 = unique_name("rg"), unique_name("rg")
    for rg in (rg1, rg2):
        rm.resource_groups.create_or_update(rg, {"location": LOC})
    msi.user_assigned_identities.create_or_update(rg1, "a", {"location": LOC})
    msi.user_assigned_identities.create_or_update(rg1, "b", {"location": LOC})
    msi.user_assigned_identities.create_or_update(rg2, "c", {"location": LOC})
    assert sorted(i.name for i in msi.user_assigned_identities.list_by_resource_group(rg1)) == ["a", "b"]
    in_sub = {i.name for i in msi.user_assigned_identities.list_by_subscription()}
    assert {"a", "b", "c"} <= in_sub
    assert sorted(r.name for r in rm.resources.list_by_resource_group(rg1)) == ["a", "b"]
    in_subscription = {r.name for r in rm.resources.list()}
    assert {"a", "b", "c"} <= in_subscription and rg1 not in in_subscription
    assert {rg1, rg2} <= {g.name for g in rm.resource_groups.list()}


def test_subscription_and_provider_registration(sandbox: Sandbox, mgmt_client: Any) -> None:
    rm = mgmt_client(ResourceManagementClient)
    assert rm.providers.register("Microsoft.DigitalTwins").registration_state == "Registered"
    assert rm.providers.get("Microsoft.EventGrid").registration_state == "Registered"
    subs = _raw(sandbox, "GET", "/subscriptions?api-version=2022-12-01").json()["value"]
    assert [s["subscriptionId"] for s in subs] == [sandbox.ctx.subscription_id]
    one = _raw(sandbox, "GET", f"/subscriptions/{sandbox.ctx.subscription_id}?api-version=2022-12-01").json()
    assert one["tenantId"] == sandbox.ctx.tenant_id and one["state"] == "Enabled"
    other = _raw(sandbox, "GET", "/subscriptions/other/providers/Microsoft.Web?api-version=2025-04-01")
    assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"


def test_long_lists_are_paged_with_next_link(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    kw = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    ResourceManagementClient(cred, sb.ctx.subscription_id, **kw).resource_groups.create_or_update(
        "rg-p", {"location": LOC}
    )
    msi = ManagedServiceIdentityClient(cred, sb.ctx.subscription_id, **kw)
    for i in range(230):
        msi.user_assigned_identities.create_or_update("rg-p", f"mi{i:03d}", {"location": LOC})
    seq = sb.ctx.request_log.last_seq()
    names = [i.name for i in msi.user_assigned_identities.list_by_resource_group("rg-p")]
    assert names == [f"mi{i:03d}" for i in range(230)]
    pages = [r.url for r in sb.ctx.request_log.since(seq)]
    assert len(pages) == 3 and "skiptoken=100" in pages[1] and "skiptoken=200" in pages[2]
    r = _raw(
        sb,
        "GET",
        f"/subscriptions/{sb.ctx.subscription_id}/resourceGroups/rg-p/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2024-11-30&$skiptoken=zz",
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidSkipToken"


def test_rg_delete_removes_everything_and_calls_hooks(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    deleted: list[str] = []
    put: list[str] = []

    class Hooks:
        def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
            put.append(resource_id)
            resource["properties"]["hookField"] = "set-by-hook"

        def on_delete(self, resource_id: str) -> None:
            deleted.append(resource_id)

    sb.ctx.register_hooks("Microsoft.ManagedIdentity/userAssignedIdentities", Hooks())
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    kw = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    rm = ResourceManagementClient(cred, sb.ctx.subscription_id, **kw)
    msi = ManagedServiceIdentityClient(cred, sb.ctx.subscription_id, **kw)
    rm.resource_groups.create_or_update("rg-h", {"location": LOC})
    msi.user_assigned_identities.create_or_update("rg-h", "one", {"location": LOC})
    msi.user_assigned_identities.create_or_update("rg-h", "two", {"location": LOC})
    got = requests.get(
        f"{sb.arm_url}/subscriptions/{sb.ctx.subscription_id}/resourceGroups/rg-h/providers/Microsoft.ManagedIdentity/userAssignedIdentities/one?api-version=2024-11-30",
        headers={"Authorization": f"Bearer {make_token('x', ARM_SCOPE)}"},
        verify=sb.ca_file,
        timeout=10,
    ).json()
    assert got["properties"]["hookField"] == "set-by-hook"
    assert len(put) == 2
    rm.resource_groups.begin_delete("rg-h").result()
    assert sorted(d.rsplit("/", 1)[-1] for d in deleted) == ["one", "two"]
    assert [r["id"] for r in sb.list_resources()["azure"]] == []


def test_a_hook_can_refuse_a_put_with_an_arm_error(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()

    class Refused(Exception):
        status = 400
        code = "InvalidTopicSettings"

    class Hooks:
        def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
            if resource.get("tags", {}).get("bad"):
                raise Refused("tag 'bad' is not allowed here")

        def on_delete(self, resource_id: str) -> None:
            return None

    sb.ctx.register_hooks("Microsoft.ManagedIdentity/userAssignedIdentities", Hooks())
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    kw = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    ResourceManagementClient(cred, sb.ctx.subscription_id, **kw).resource_groups.create_or_update(
        "rg", {"location": LOC}
    )
    msi = ManagedServiceIdentityClient(cred, sb.ctx.subscription_id, **kw)
    with pytest.raises(HttpResponseError) as err:
        msi.user_assigned_identities.create_or_update("rg", "mi", {"location": LOC, "tags": {"bad": "1"}})
    assert err.value.status_code == 400 and err.value.error.code == "InvalidTopicSettings"
    assert "tag 'bad'" in err.value.error.message
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get("rg", "mi")
    good = msi.user_assigned_identities.create_or_update("rg", "mi", {"location": LOC, "tags": {"ok": "1"}})
    with pytest.raises(HttpResponseError):
        msi.user_assigned_identities.create_or_update("rg", "mi", {"location": LOC, "tags": {"bad": "1"}})
    assert (
        msi.user_assigned_identities.get("rg", "mi").tags == good.tags
    )  # the refused update changed nothing


def test_rg_delete_of_missing_group_is_404(sandbox: Sandbox, mgmt_client: Any, unique_name: Any) -> None:
    rm = mgmt_client(ResourceManagementClient)
    with pytest.raises(ResourceNotFoundError) as err:
        rm.resource_groups.begin_delete(unique_name("rg")).result()
    assert err.value.error.code == "ResourceGroupNotFound"
