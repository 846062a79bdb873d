"""Every ARM and Digital Twins call the control plane makes in the e2e deployments (`azure-only`,
`aws-to-azure`: deploy, unchanged re-deploy, destroy), and every sandbox answer, held to Azure's
published OpenAPI document of its api-version (see `openapi.py` for the rules, `specs/` for the
documents and where each comes from)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure_openapi import SPEC_ROOT, Specs
from conformance_kit import EXAMPLES, Run, control_plane, example

from sandbox.core.auth import SandboxCredential
from sandbox.core.exchanges import Exchange

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
RG = f"{SUB}/resourceGroups/rg"
SITE = f"{RG}/providers/Microsoft.Web/sites/app"
WEB = "2025-05-01"
COSMOS = "2026-03-15"
COSMOS_ACCOUNT = ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DocumentDB/"
                  "databaseAccounts/{accountName}")


@pytest.fixture(scope="module")
def specs() -> Specs:
    return Specs()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with control_plane(tmp_path_factory.mktemp("conformance")) as run:
        for name in EXAMPLES:
            spec = example(name)
            for label in ("deploy", "redeploy"):
                view = run.deploy(spec, f"{name} {label}")
                assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
            view = run.destroy(spec["twin"]["name"], f"{name} destroy")
            assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
        yield run


@pytest.mark.slow
def test_every_call_of_the_e2e_deployments_and_every_answer_match_azures_specification(
    deployed: Run, specs: Specs
) -> None:
    report = specs.report(deployed.exchanges)
    print(f"\nconformance: {report.summary()}")
    assert [str(v) for v in report.violations] == []
    # The deployments reached every kind of resource they create (a broken recording checks nothing).
    assert report.checked > 300 and len(report.resource_types) >= 18, report.summary()
    cosmos = {"Microsoft.DocumentDB/databaseAccounts", "Microsoft.DocumentDB/databaseAccounts/listKeys",
              "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
              "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"}
    assert cosmos <= report.resource_types, sorted(report.resource_types)
    assert {"arm", "digitaltwins"} <= {e.service for e in deployed.exchanges}


def test_the_kept_documents_hold_every_operation_and_every_reference() -> None:
    import sys

    sys.path.insert(0, str(SPEC_ROOT))
    try:
        import extract
    finally:
        sys.path.remove(str(SPEC_ROOT))
    assert extract.check() == []
    assert "MIT License" in (SPEC_ROOT / "LICENSE").read_text()


def test_the_kept_documents_are_valid_swagger_2() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV2SpecValidator

    documents = [f for f in sorted(SPEC_ROOT.rglob("*.json")) if json.loads(f.read_text()).get("paths")]
    assert len(documents) >= 12
    for file in documents:
        validate(json.loads(file.read_text()), base_uri=file.as_uri(), cls=OpenAPIV2SpecValidator)


# --- the checker catches what it claims to (synthetic exchanges) ---------------------------------


def exchange(method: str, path: str, api_version: str = WEB, body: Any = None, status: int = 200,
             answer: Any = None, service: str = "arm") -> Exchange:
    return Exchange(service, method, path, {"api-version": api_version}, body, status, {}, answer)


def site(**properties: Any) -> dict[str, Any]:
    return {"id": SITE, "name": "app", "type": "Microsoft.Web/sites", "location": "westeurope",
            "kind": "functionapp,linux", "properties": {"enabled": True, **properties}}


def violations(specs: Specs, ex: Exchange) -> list[str]:
    return [str(v) for v in specs.check(ex)[1]]


def test_a_conforming_site_read_passes(specs: Specs) -> None:
    # A property that is not required may be null (as App Service answers).
    assert violations(specs, exchange("GET", SITE, answer=site(hostNames=["app.azurewebsites.net"],
                                                               clientCertMode=None))) == []


def test_a_patch_of_site_tags_is_an_undeclared_request_property(specs: Specs) -> None:
    found = violations(specs, exchange("PATCH", SITE, body={"tags": {"twin-package-sha256": "ab"}}, answer=site()))
    assert len(found) == 1 and "[request]" in found[0] and "'tags' was unexpected" in found[0], found


def test_a_read_only_property_sent_is_a_request_violation(specs: Specs) -> None:
    body = {"location": "westeurope", "properties": {"state": "Running", "serverFarmId": "x"}}
    found = violations(specs, exchange("PUT", SITE, body=body, answer=site()))
    assert found == [f"[request] PUT {_template('sites/{name}')} ({WEB}, 200): $.properties.state: "
                     "a readOnly property was sent"], found


def test_a_missing_required_property_and_a_wrong_enum_value_are_request_violations(specs: Specs) -> None:
    path = f"{RG}/providers/Microsoft.Devices/IotHubs/hub"
    body = {"location": "westeurope", "sku": {"name": "S9"}}  # capacity is optional; the name an enum
    found = violations(specs, exchange("PUT", path, "2023-06-30", body=body, status=201,
                                       answer={"location": "westeurope", "sku": {"name": "S1"}}))
    assert any("$.sku.name: 'S9' is not one of" in v for v in found), found
    ra = f"{SITE}/providers/Microsoft.Authorization/roleAssignments/0b5b6b5c-3d8e-4f4e-9d0a-000000000001"
    found = violations(specs, exchange("PUT", ra, "2022-04-01", body={"properties": {"roleDefinitionId": "x"}},
                                       status=201, answer={}))
    assert any("'principalId' is a required property" in v for v in found), found


def test_an_undeclared_answer_property_a_wrong_type_and_an_undeclared_status_are_response_violations(
    specs: Specs,
) -> None:
    found = violations(specs, exchange("GET", SITE, answer=site(provisioningState="Succeeded", enabled="yes")))
    assert any("$.properties: Unevaluated properties are not allowed ('provisioningState'" in v for v in found)
    assert any("$.properties.enabled: expected boolean, got string" in v for v in found), found
    found = violations(specs, exchange("PUT", SITE, body={"location": "westeurope"}, status=201, answer=site()))
    assert any("status 201 is not one the operation declares" in v for v in found), found


def test_a_polymorphic_object_is_checked_as_the_subtype_its_discriminator_names(specs: Specs) -> None:
    path = f"{RG}/providers/Microsoft.EventGrid/systemTopics/st/eventSubscriptions/sub"
    function = {"endpointType": "AzureFunction", "properties": {"resourceId": f"{SITE}/functions/f"}}
    ok = exchange("PUT", path, "2025-02-15", body={"properties": {"destination": function}}, status=201,
                  answer={"properties": {"destination": function}})
    assert violations(specs, ok) == []
    webhook_field = {**function, "properties": {**function["properties"], "endpointUrl": "https://x"}}
    bad = exchange("PUT", path, "2025-02-15", body={"properties": {"destination": webhook_field}}, status=201,
                   answer={"properties": {"destination": function}})
    found = violations(specs, bad)
    assert len(found) == 1 and "'endpointUrl' was unexpected" in found[0], found


def test_a_call_without_a_kept_specification_is_a_violation(specs: Specs) -> None:
    unknown_version = violations(specs, exchange("GET", SITE, api_version="2099-01-01", answer=site()))
    unknown_type = violations(specs, exchange("GET", f"{RG}/providers/Microsoft.Contoso/widgets/w", answer={}))
    for found in (unknown_version, unknown_type):
        assert len(found) == 1 and found[0].startswith("[specification]"), found


def test_cosmos_db_calls_are_held_to_its_2026_03_15_document(specs: Specs) -> None:
    account = f"{RG}/providers/Microsoft.DocumentDB/databaseAccounts/acct"
    database = f"{account}/sqlDatabases/db"
    container = f"{database}/containers/c"
    read = {"id": container, "name": "c", "type": "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
            "properties": {"resource": {"id": "c", "partitionKey": {"paths": ["/device_id"], "kind": "Hash"},
                                        "defaultTtl": -1, "_rid": "x", "_ts": 1, "_etag": "e"}}}
    assert violations(specs, exchange("GET", container, COSMOS, answer=read)) == []
    # SqlDatabaseGetProperties declares no provisioningState (the sandbox once invented one).
    db = {"id": database, "name": "db", "properties": {"resource": {"id": "db"}, "provisioningState": "Succeeded"}}
    found = violations(specs, exchange("GET", database, COSMOS, answer=db))
    assert len(found) == 1 and "Unevaluated properties are not allowed ('provisioningState'" in found[0], found
    found = violations(specs, exchange("PUT", database, COSMOS, body={"properties": {}}, status=202))
    assert found == [f"[request] PUT {COSMOS_ACCOUNT}/sqlDatabases/{{databaseName}} ({COSMOS}, 202): "
                     "$.properties: 'resource' is a required property"], found
    # The account PUT declares 200 only (the service answers 200 with Azure-AsyncOperation while it works).
    body = {"location": "westeurope", "properties": {"locations": [{"locationName": "westeurope"}],
                                                     "databaseAccountOfferType": "Standard"}}
    found = violations(specs, exchange("PUT", account, COSMOS, body=body, status=201, answer={}))
    assert len(found) == 1 and "status 201 is not one the operation declares (200, default)" in found[0], found
    # The keys are what listKeys declares; another api-version of Cosmos DB has no document here.
    keys = {k: "k" for k in ("primaryMasterKey", "secondaryMasterKey", "primaryReadonlyMasterKey",
                             "secondaryReadonlyMasterKey")}
    assert violations(specs, exchange("POST", f"{account}/listKeys", COSMOS, answer=keys)) == []
    other_version = specs.report([exchange("GET", account, "2099-01-01", answer={})])
    assert [v.side for v in other_version.violations] == ["specification"]


def test_the_sandbox_refuses_a_cosmos_body_the_document_says_is_incomplete(tmp_path: Path) -> None:
    """The sandbox answers 400 where Cosmos DB's `required` is not met, instead of storing what the
    service would refuse; nothing is created."""
    from sandbox.server import Sandbox

    with Sandbox(tmp_path, with_blob=False, with_aws=False, with_function_apps=False, with_gcp=False) as sb:
        credential = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
        token = credential.get_token("https://management.azure.com/.default").token

        def put(path: str, body: Any) -> requests.Response:
            return requests.put(f"{sb.arm_url}{RG}{path}", params={"api-version": COSMOS}, json=body,
                                headers={"Authorization": f"Bearer {token}"}, verify=sb.ca_file, timeout=30)

        assert requests.put(f"{sb.arm_url}{RG}", params={"api-version": "2025-04-01"}, json={"location": "westeurope"},
                            headers={"Authorization": f"Bearer {token}"}, verify=sb.ca_file, timeout=30).ok
        account = "/providers/Microsoft.DocumentDB/databaseAccounts/acct"
        refused = put(account, {"location": "westeurope", "properties": {"databaseAccountOfferType": "Standard"}})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["message"] == "properties.locations: required property is missing."
        assert requests.get(f"{sb.arm_url}{RG}{account}", params={"api-version": COSMOS}, verify=sb.ca_file,
                            headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 404
        created = put(account, {"location": "westeurope", "properties": {
            "locations": [{"locationName": "westeurope"}], "databaseAccountOfferType": "Standard"}})
        assert created.status_code == 200 and created.json()["kind"] == "GlobalDocumentDB", created.text
        refused = put(f"{account}/sqlDatabases/db", {"properties": {"resource": {}}})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "properties.resource.id: required property is missing."


def test_violation_messages_never_show_a_value(specs: Specs) -> None:
    secret = "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0LXNob3VsZC1uZXZlci1zaG93"
    list_path = f"{SITE}/config/appsettings/list"
    answers = [
        {"properties": {"AzureWebJobsStorage": 5}},  # wrong type
        {"properties": {}, "AzureWebJobsStorage": secret},  # undeclared property
    ]
    for answer in answers:
        found = violations(specs, exchange("POST", list_path, answer=answer))
        assert found and not any(secret in v or "c2VjcmV0" in v for v in found), found


def _template(suffix: str) -> str:
    return "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/" + suffix

