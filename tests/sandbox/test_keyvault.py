"""The sandbox's Key Vault secrets data plane, driven by the real `SecretClient` over HTTPS.

Vaults and role assignments are made through ARM with the real azure-mgmt clients (generic
resources: azure-mgmt-keyvault is not installed); every data-plane call goes through
azure-keyvault-secrets unchanged except for the vault URL, the CA file, the static credential
and `verify_challenge_resource=False` (the vault is on 127.0.0.1, not under vault.azure.net).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import GenericResource

from sandbox.core.auth import SandboxCredential, make_token
from sandbox.keyvault import backend
from sandbox.server import Sandbox

API = "2023-07-01"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
VAULT_SCOPE = "https://vault.azure.net/.default"


def _mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]),
        e["subscription_id"],
        base_url=e["arm"],
        connection_verify=e["ca_file"],
        polling_interval=0,
    )


@dataclass
class Kv:
    sb: Sandbox
    rg: str
    name: str
    resource_id: str
    uri: str

    def client(self, principal: str | None = None, credential: Any = None, **kwargs: Any) -> SecretClient:
        cred = credential or SandboxCredential(
            principal or self.sb.endpoints["azure"]["deployer_principal_id"]
        )
        return SecretClient(
            self.uri,
            cred,
            connection_verify=self.sb.ca_file,
            verify_challenge_resource=False,
            retry_total=0,
            **kwargs,
        )


def _vault_id(sb: Sandbox, rg: str, name: str) -> str:
    sub = sb.endpoints["azure"]["subscription_id"]
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"


def _put_vault(sb: Sandbox, rg: str, name: str, **props: Any) -> Any:
    arm = _mgmt(sb, ResourceManagementClient)
    arm.resource_groups.create_or_update(rg, {"location": "westeurope"})
    properties = {
        "tenantId": sb.endpoints["azure"]["tenant_id"],
        "sku": {"family": "A", "name": "standard"},
        "accessPolicies": [],
        **props,
    }
    return arm.resources.begin_create_or_update_by_id(
        _vault_id(sb, rg, name),
        api_version=API,
        parameters=GenericResource(location="westeurope", properties=properties),
    ).result()


def _new_vault(sb: Sandbox, **props: Any) -> Kv:
    suffix = uuid.uuid4().hex[:8]
    rg, name = f"rg-kv-{suffix}", f"kv-{suffix}"
    res = _put_vault(sb, rg, name, **props)
    return Kv(sb, rg, name, res.id, res.properties["vaultUri"])


def _drop(kv: Kv) -> None:
    _mgmt(kv.sb, ResourceManagementClient).resource_groups.begin_delete(kv.rg).result()


def _grant(sb: Sandbox, scope: str, principal: str, role: str) -> None:
    sub = sb.endpoints["azure"]["subscription_id"]
    _mgmt(sb, AuthorizationManagementClient).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(  # type: ignore[call-arg]  # mypy sees the 2015 model
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )


def _code(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str]:
    err = exc.value
    assert err.error is not None, err
    return int(err.status_code or 0), str(err.error.code)


def _inner(exc: pytest.ExceptionInfo[HttpResponseError]) -> str:
    assert exc.value.response is not None
    return str(json.loads(exc.value.response.text())["error"]["innererror"]["code"])


@pytest.fixture(scope="module")
def kv(sandbox: Sandbox) -> Iterator[Kv]:
    v = _new_vault(sandbox)
    yield v
    _drop(v)


def _raw(
    kv: Kv,
    method: str,
    path: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.request(
        method, f"{kv.uri}{path}", verify=kv.sb.ca_file, timeout=10, headers=headers, **kwargs
    )


def _token(kv: Kv, audience_scope: str = VAULT_SCOPE, principal: str | None = None, **kwargs: Any) -> str:
    return make_token(
        principal or kv.sb.endpoints["azure"]["deployer_principal_id"], audience_scope, **kwargs
    )


# --- the vault through ARM -------------------------------------------------------------------------


def test_arm_vault_has_vault_uri_and_defaults(kv: Kv) -> None:
    port = kv.sb.arm_url.rsplit(":", 1)[1]
    assert kv.uri == f"https://127.0.0.1:{port}/keyvault/{kv.name}/"
    res = _mgmt(kv.sb, ResourceManagementClient).resources.get_by_id(kv.resource_id, api_version=API)
    props = res.properties
    assert props["provisioningState"] == "Succeeded"
    assert props["vaultUri"] == kv.uri
    assert props["enableSoftDelete"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert props["enableRbacAuthorization"] is False


def test_invalid_and_taken_vault_names_are_refused_by_arm(sandbox: Sandbox, kv: Kv) -> None:
    with pytest.raises(HttpResponseError) as bad:
        _put_vault(sandbox, kv.rg, "kv--double-hyphen")
    assert _code(bad) == (400, "VaultNameNotValid")
    other_rg = f"rg-kv-other-{uuid.uuid4().hex[:6]}"
    with pytest.raises(HttpResponseError) as taken:
        _put_vault(sandbox, other_rg, kv.name)
    assert _code(taken) == (409, "VaultAlreadyExists")
    _mgmt(sandbox, ResourceManagementClient).resource_groups.begin_delete(other_rg).result()


def test_deleting_the_vault_through_arm_drops_its_data(sandbox: Sandbox) -> None:
    v = _new_vault(sandbox)
    v.client().set_secret("kept", "one")
    arm = _mgmt(sandbox, ResourceManagementClient)
    arm.resources.begin_delete_by_id(v.resource_id, api_version=API).result()
    with pytest.raises(ResourceNotFoundError) as gone:
        v.client().get_secret("kept")
    assert _code(gone) == (404, "VaultNotFound")
    _put_vault(sandbox, v.rg, v.name)
    assert list(v.client().list_properties_of_secrets()) == [], "a recreated vault starts empty"
    _drop(v)


# --- set / get / versions / lists ------------------------------------------------------------------


def test_set_makes_a_new_version_each_time_and_get_reads_latest_or_any(kv: Kv) -> None:
    c = kv.client()
    first = c.set_secret("conn-string", "value-one", content_type="text/plain", tags={"twin": "t1"})
    second = c.set_secret("conn-string", "value-two")
    assert first.value == "value-one" and second.value == "value-two"
    assert first.properties.version != second.properties.version
    assert len(str(first.properties.version)) == 32
    assert first.properties.content_type == "text/plain" and first.properties.tags == {"twin": "t1"}
    assert second.properties.tags is None
    assert first.name == "conn-string"
    assert first.properties.enabled is True
    assert first.properties.recovery_level == "Recoverable+Purgeable"
    assert first.properties.recoverable_days == 90
    assert first.properties.created_on is not None and first.properties.updated_on is not None

    assert c.get_secret("conn-string").value == "value-two"
    assert c.get_secret("CONN-STRING").value == "value-two", "secret names are case-insensitive"
    old = c.get_secret("conn-string", first.properties.version)
    assert old.value == "value-one" and old.id == first.id

    versions = list(c.list_properties_of_secret_versions("conn-string"))
    assert {v.version for v in versions} == {first.properties.version, second.properties.version}
    # The id the SDK parsed names the secret and version (the vault part is the server origin).
    ident = KeyVaultSecretIdentifier(str(second.id))
    assert (ident.name, ident.version) == ("conn-string", second.properties.version)


def test_lists_never_carry_values_and_page_with_next_link(kv: Kv) -> None:
    c = kv.client()
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for i in range(7):
        c.set_secret(f"{prefix}-{i}", f"v{i}")
    token = _token(kv)
    r = _raw(kv, "GET", "secrets", token, params={"api-version": "7.6", "maxresults": "3"})
    assert r.status_code == 200
    body = r.json()
    assert len(body["value"]) == 3 and body["nextLink"].startswith(f"{kv.uri}secrets?")
    assert all("value" not in item for item in body["value"])
    assert all(item["id"].rsplit("/", 2)[-2] == "secrets" for item in body["value"]), (
        "list ids have no version"
    )

    pages = [list(page) for page in c.list_properties_of_secrets(max_page_size=2).by_page()]
    names = [p.name for page in pages for p in page]
    sizes = [len(p) for p in pages]
    assert all(n == 2 for n in sizes[:-1]) and sizes[-1] in (1, 2) and len(sizes) >= 4
    assert sorted(n for n in names if n and n.startswith(prefix)) == [f"{prefix}-{i}" for i in range(7)]
    assert len(names) == len(set(names)), "no secret on two pages"

    for i in range(3):
        c.set_secret(f"{prefix}-0", f"again-{i}")
    vpages = [list(p) for p in c.list_properties_of_secret_versions(f"{prefix}-0", max_page_size=2).by_page()]
    assert [len(p) for p in vpages] == [2, 2]
    r = _raw(kv, "GET", f"secrets/{prefix}-0/versions", token, params={"api-version": "7.6"})
    assert all("value" not in item for item in r.json()["value"])
    r = _raw(kv, "GET", "secrets", token, params={"api-version": "7.6", "maxresults": "26"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter"


def test_update_properties_and_disabled_secret_cannot_be_read(kv: Kv) -> None:
    c = kv.client()
    s = c.set_secret("to-disable", "v")
    updated = c.update_secret_properties("to-disable", s.properties.version, enabled=False, tags={"k": "v"})
    assert updated.enabled is False and updated.tags == {"k": "v"}
    with pytest.raises(HttpResponseError) as disabled:
        c.get_secret("to-disable")
    assert _code(disabled) == (403, "Forbidden") and _inner(disabled) == "SecretDisabled"
    c.update_secret_properties("to-disable", s.properties.version, enabled=True)
    assert c.get_secret("to-disable").value == "v"


# --- delete, poller, purge, recover --------------------------------------------------------------


def test_delete_poller_conflict_then_purge_frees_the_name(kv: Kv) -> None:
    c = kv.client()
    c.set_secret("gone", "v1")
    poller = c.begin_delete_secret("gone", _polling_interval=0)
    deleted = poller.result()
    assert deleted.recovery_id == f"{kv.sb.arm_url}/deletedsecrets/gone"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 90
    poller.wait(timeout=10)
    assert poller.done()
    assert c.get_deleted_secret("gone").name == "gone"
    assert "gone" in [d.name for d in c.list_deleted_secrets()]

    with pytest.raises(ResourceNotFoundError) as missing:
        c.get_secret("gone")
    assert _code(missing) == (404, "SecretNotFound")
    with pytest.raises(ResourceExistsError) as conflict:
        c.set_secret("gone", "v2")
    assert _code(conflict) == (409, "Conflict") and _inner(conflict) == "ObjectIsDeletedButRecoverable"

    r = _raw(kv, "DELETE", "deletedsecrets/gone", _token(kv), params={"api-version": "7.6"})
    assert r.status_code == 204
    with pytest.raises(ResourceNotFoundError):
        c.get_deleted_secret("gone")
    assert c.set_secret("gone", "v3").value == "v3"


def test_recover_brings_back_every_version(kv: Kv) -> None:
    c = kv.client()
    first = c.set_secret("comeback", "a")
    c.set_secret("comeback", "b")
    c.begin_delete_secret("comeback", _polling_interval=0).wait()
    recovered = c.begin_recover_deleted_secret("comeback", _polling_interval=0).result()
    assert recovered.name == "comeback"
    assert c.get_secret("comeback").value == "b"
    assert c.get_secret("comeback", first.properties.version).value == "a"
    with pytest.raises(ResourceNotFoundError):
        c.get_deleted_secret("comeback")


def test_vault_without_soft_delete_deletes_at_once_and_purge_protection_blocks_purge(
    sandbox: Sandbox,
) -> None:
    hard = _new_vault(sandbox, enableSoftDelete=False)
    c = hard.client()
    c.set_secret("x", "v")
    poller = c.begin_delete_secret("x", _polling_interval=0)
    assert poller.done() and poller.result().recovery_id is None
    assert c.set_secret("x", "again").value == "again", "no soft-deleted copy blocks the name"
    assert c.get_secret("x").properties.recovery_level == "Purgeable"
    _drop(hard)

    protected = _new_vault(sandbox, enablePurgeProtection=True, softDeleteRetentionInDays=7)
    c = protected.client()
    assert c.set_secret("y", "v").properties.recovery_level == "CustomizedRecoverable"
    c.begin_delete_secret("y", _polling_interval=0).wait()
    with pytest.raises(HttpResponseError) as refused:
        c.purge_deleted_secret("y")
    assert _code(refused) == (403, "Forbidden")
    _drop(protected)


# --- errors ----------------------------------------------------------------------------------------


def test_errors_have_key_vault_codes(kv: Kv) -> None:
    c = kv.client()
    with pytest.raises(ResourceNotFoundError) as missing:
        c.get_secret("never-set")
    assert _code(missing) == (404, "SecretNotFound")
    c.set_secret("has-one", "v")
    with pytest.raises(ResourceNotFoundError) as no_version:
        c.get_secret("has-one", "0" * 32)
    assert _code(no_version) == (404, "SecretNotFound")
    with pytest.raises(HttpResponseError) as bad_name:
        c.set_secret("under_score", "v")
    assert _code(bad_name) == (400, "BadParameter")
    with pytest.raises(ResourceNotFoundError) as deleted_missing:
        c.get_deleted_secret("never-deleted")
    assert _code(deleted_missing) == (404, "SecretNotFound")

    token = _token(kv)
    long_name = "a" * 128
    r = _raw(kv, "PUT", f"secrets/{long_name}", token, params={"api-version": "7.6"}, json={"value": "v"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter"
    assert _raw(
        kv, "PUT", f"secrets/{'a' * 127}", token, params={"api-version": "7.6"}, json={"value": "v"}
    ).ok
    r = _raw(kv, "PUT", "secrets/no-value", token, params={"api-version": "7.6"}, json={"tags": {}})
    assert r.status_code == 400 and "value" in r.json()["error"]["message"]
    r = _raw(kv, "PUT", "secrets/big", token, params={"api-version": "7.6"}, json={"value": "x" * 25601})
    assert r.status_code == 400
    r = _raw(kv, "GET", "secrets/has-one", token)
    assert r.status_code == 400 and "api-version" in r.json()["error"]["message"]
    r = _raw(kv, "GET", "secrets", token, params={"api-version": "7.6", "$skiptoken": "%%%"})
    assert r.status_code == 400


# --- authentication and RBAC -----------------------------------------------------------------------


def test_request_without_token_gets_the_key_vault_challenge(kv: Kv) -> None:
    r = _raw(kv, "GET", "secrets", params={"api-version": "7.6"})
    assert r.status_code == 401
    tenant = kv.sb.endpoints["azure"]["tenant_id"]
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault.azure.net"'
    )
    assert r.json()["error"]["code"] == "Unauthorized"
    r = _raw(kv, "GET", "secrets", "not-a-jwt", params={"api-version": "7.6"})
    assert r.status_code == 401
    expired = _token(kv, expires_on=int(time.time()) - 60)
    assert _raw(kv, "GET", "secrets", expired, params={"api-version": "7.6"}).status_code == 401
    other_tenant = _token(kv, tenant_id="22222222-2222-2222-2222-222222222222")
    r = _raw(kv, "GET", "secrets", other_tenant, params={"api-version": "7.6"})
    assert r.status_code == 401 and "AKV10032" in r.json()["error"]["message"]


class _ArmOnlyCredential:
    """Issues management tokens whatever scope is asked: a misconfigured client."""

    def __init__(self, principal: str) -> None:
        self.principal = principal

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        expires = int(time.time()) + 3600
        return AccessToken(
            make_token(self.principal, "https://management.azure.com/.default", expires_on=expires), expires
        )


def test_token_for_another_audience_is_refused(kv: Kv) -> None:
    principal = kv.sb.endpoints["azure"]["deployer_principal_id"]
    r = _raw(
        kv,
        "GET",
        "secrets",
        _token(kv, "https://management.azure.com/.default"),
        params={"api-version": "7.6"},
    )
    assert r.status_code == 401
    assert "AKV10022" in r.json()["error"]["message"] and "WWW-Authenticate" in r.headers
    with pytest.raises(ClientAuthenticationError) as refused:
        kv.client(credential=_ArmOnlyCredential(principal)).get_secret("anything")
    assert refused.value.status_code == 401


def test_client_needs_verify_challenge_resource_false_for_a_local_vault(kv: Kv) -> None:
    strict = SecretClient(
        kv.uri,
        SandboxCredential(kv.sb.endpoints["azure"]["deployer_principal_id"]),
        connection_verify=kv.sb.ca_file,
    )
    with pytest.raises(ValueError, match="verify_challenge_resource"):
        strict.get_secret("anything")


def test_without_rbac_any_valid_token_reads_and_writes(kv: Kv) -> None:
    stranger = kv.client(str(uuid.uuid4()))
    stranger.set_secret("open", "v")
    assert stranger.get_secret("open").value == "v"


def test_rbac_vault_needs_a_secrets_role_at_the_vault_scope_or_above(sandbox: Sandbox) -> None:
    v = _new_vault(sandbox, enableRbacAuthorization=True)
    reader, writer = str(uuid.uuid4()), str(uuid.uuid4())
    r_client, w_client = v.client(reader), v.client(writer)
    with pytest.raises(HttpResponseError) as denied:
        w_client.set_secret("s", "v")
    assert _code(denied) == (403, "Forbidden") and _inner(denied) == "ForbiddenByRbac"
    assert "secrets/setSecret/action" in str(denied.value.message)

    # The group scope is above the vault: an Officer there may write in the vault.
    sub = sandbox.endpoints["azure"]["subscription_id"]
    _grant(sandbox, f"/subscriptions/{sub}/resourceGroups/{v.rg}", writer, SECRETS_OFFICER)
    w_client.set_secret("s", "v")
    w_client.begin_delete_secret("s", _polling_interval=0).wait()
    w_client.begin_recover_deleted_secret("s", _polling_interval=0).wait()

    with pytest.raises(HttpResponseError) as no_read:
        r_client.get_secret("s")
    assert _code(no_read) == (403, "Forbidden")
    _grant(sandbox, v.resource_id, reader, SECRETS_USER)
    assert r_client.get_secret("s").value == "v"
    assert [p.name for p in r_client.list_properties_of_secrets()] == ["s"]
    with pytest.raises(HttpResponseError) as user_cannot_write:
        r_client.set_secret("s", "new")
    assert _code(user_cannot_write) == (403, "Forbidden")

    # Turning RBAC off through ARM (a PUT of the vault) applies at once and keeps the data.
    _put_vault(sandbox, v.rg, v.name, enableRbacAuthorization=False)
    assert v.client(str(uuid.uuid4())).get_secret("s").value == "v"
    _drop(v)


# --- secrets stay out of logs ----------------------------------------------------------------------


def test_secret_values_never_reach_the_request_log_or_logs(kv: Kv, caplog: pytest.LogCaptureFixture) -> None:
    value = f"do-not-log-{uuid.uuid4().hex}"
    since = kv.sb.ctx.request_log.last_seq()
    caplog.set_level(logging.DEBUG)
    c = kv.client()
    s = c.set_secret("logged", value)
    c.get_secret("logged", s.properties.version)
    # A body the server cannot parse must not be quoted back either.
    r = _raw(
        kv,
        "PUT",
        "secrets/logged",
        _token(kv),
        params={"api-version": "7.6"},
        data=('{"value": "' + value + '"').encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and value not in r.text
    records = kv.sb.ctx.request_log.since(since)
    ops = [rec.operation for rec in records]
    assert "keyvault:SetSecret" in ops and "keyvault:GetSecret" in ops
    assert value not in json.dumps([rec.to_json() for rec in records])
    assert value not in caplog.text


def test_the_challenge_probe_is_not_counted_as_a_mutating_call(kv: Kv) -> None:
    since = kv.sb.ctx.request_log.last_seq()
    assert _raw(kv, "PUT", "secrets/probe", params={"api-version": "7.6"}).status_code == 401
    assert _raw(kv, "PUT", "secrets/probe", _token(kv), params={"api-version": "7.6"}, json={"value": "v"}).ok
    records = kv.sb.ctx.request_log.since(since)
    assert [(r.status, r.mutating) for r in records] == [(401, False), (200, True)]


def test_backend_lists_names_only(kv: Kv) -> None:
    kv.client().set_secret("named", "hidden-value")
    vault = backend(kv.sb.ctx).vault(kv.name)
    assert vault is not None and "named" in vault.secret_names()


def test_sandbox_reset_forgets_vaults(sandbox_factory: Any) -> None:
    sb = sandbox_factory()
    v = _new_vault(sb)
    v.client().set_secret("before-reset", "v")
    sb.reset()
    with pytest.raises(ResourceNotFoundError) as gone:
        v.client().get_secret("before-reset")
    assert _code(gone) == (404, "VaultNotFound")
