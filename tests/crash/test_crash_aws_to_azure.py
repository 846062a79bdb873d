"""Crash windows (issue 12 item 5, "Must show"): the host is killed right after one call of each
kind of mutating call of an `aws-to-azure` deployment, and then of its destroy, each time after
the cloud did the work and before the host heard of it. The host restarts on its state folder
and the operation resumes. Afterwards the clouds hold exactly what the plan says (nothing extra:
no second certificate, role or bucket), every resource is reported `created` (not `updated`
because a killed attempt made it), and after the destroy nothing of the twin is left.

One sandbox, one host state; 37 kills in one deployment and one destroy."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_kit import Host, KillSwitch, Kind, aws, azure

from sandbox.server import Sandbox
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan
from shared.resources.azure import RoleAssignmentConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "examples" / "aws-to-azure" / "twin.json").read_text())
TWIN = SPEC["twin"]["name"]
GROUP = f"/resourcegroups/{TWIN}-rg"
ARM = rf"/subscriptions/[^/]+/resourcegroups/{TWIN}-rg/providers/"  # the twin's, not the control plane's

# One call per resource kind of the plan: its create (for the IoT device, the certificate's
# registration: the window before AttachThingPrincipal; for S3, the window before the
# bucket's owner tags), and for the destroy its delete (the IoT device's DetachThingPrincipal: the
# window before DeleteCertificate). A role assignment has no delete call in a destroy (it goes
# with the resource it is scoped to).
DEPLOY_KINDS = [
    aws("keyvault:SetSecret"),  # control/setup/inter-cloud-token (the vault keeps secret outputs)
    aws("resource-groups:CreateGroup"),
    aws("lambda:CreateFunction"),
    aws("iot:CreateTopicRule"),
    aws("iot:RegisterCertificateWithoutCA"),
    aws("dynamodb:CreateTable"),
    aws("s3:CreateBucket"),
    aws("events:PutRule"),
    azure("resource group", "PUT", rf"/resourcegroups/{TWIN}-rg$"),
    azure("identity", "PUT", ARM + r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$"),
    azure("storage account", "PUT", ARM + r"Microsoft\.Storage/storageAccounts/[^/]+$"),
    azure("App Service plan", "PUT", ARM + r"Microsoft\.Web/serverfarms/[^/]+$"),
    azure("Function App package", "POST", r"/api/publish$"),
    azure("Digital Twins", "PUT", ARM + r"Microsoft\.DigitalTwins/digitalTwinsInstances/[^/]+$"),
    azure("role assignment", "PUT", r"/providers/Microsoft\.Authorization/roleAssignments/[^/]+$"),
    azure("DTDL models", "POST", r"/models$"),
    azure("twin graph", "PUT", r"/digitaltwins/[^/]+$"),
    azure("Managed Grafana", "PUT", ARM + r"Microsoft\.Dashboard/grafana/[^/]+$"),
    azure("Grafana datasource", "POST", r"/api/datasources$"),
]
DESTROY_KINDS = [
    aws("keyvault:DeleteSecret"),
    aws("resource-groups:DeleteGroup"),
    aws("lambda:DeleteFunction"),
    aws("iot:DeleteTopicRule"),
    aws("iot:DetachThingPrincipal"),
    aws("dynamodb:DeleteTable"),
    aws("s3:DeleteBucket"),
    aws("events:DeleteRule"),
    azure("resource group", "DELETE", rf"/resourcegroups/{TWIN}-rg$"),
    azure("identity", "DELETE", ARM + r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$"),
    azure("storage account", "DELETE", ARM + r"Microsoft\.Storage/storageAccounts/[^/]+$"),
    azure("App Service plan", "DELETE", ARM + r"Microsoft\.Web/serverfarms/[^/]+$"),
    azure("Function App", "DELETE", ARM + r"Microsoft\.Web/sites/[^/]+$"),
    azure("Digital Twins", "DELETE", ARM + r"Microsoft\.DigitalTwins/digitalTwinsInstances/[^/]+$"),
    azure("DTDL model", "DELETE", r"/models/[^/]+$"),
    azure("twin graph", "DELETE", r"/digitaltwins/[^/]+$"),
    azure("Managed Grafana", "DELETE", ARM + r"Microsoft\.Dashboard/grafana/[^/]+$"),
    azure("Grafana datasource", "DELETE", r"/api/datasources/uid/[^/]+$"),
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("crash-sandbox"), with_blob=False, with_gcp=False) as sb:
        try:
            yield sb
        finally:
            if sb.aws is not None:
                sb.aws.reset()  # moto's state is process-wide


def _name(item: dict[str, Any]) -> str:
    return str(item["id"]).replace(":", "/").rsplit("/", 1)[-1]


def inventory(sb: Sandbox) -> Counter[tuple[str, str]]:
    """(type, name) of everything of the twin in the clouds (certificates by type: their ids
    are hashes; role assignments likewise: their names are GUIDs)."""
    out: Counter[tuple[str, str]] = Counter()
    for item in sb.list_resources().get("aws", []):
        if item["type"] == "iot:certificate":
            out[(item["type"], "*")] += 1
        elif TWIN in _name(item) or TWIN.replace("-", "_") in _name(item):
            out[(item["type"], _name(item))] += 1
    for item in sb.list_resources().get("azure", []):
        if GROUP in str(item["id"]).lower():
            named = "*" if item["type"] == "Microsoft.Authorization/roleAssignments" else str(item["name"])
            out[(str(item["type"]), named)] += 1
    return out


AZURE_TYPES = {
    "resource-group": "Microsoft.Resources/resourceGroups", "identity": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "storage-account": "Microsoft.Storage/storageAccounts", "app-service-plan": "Microsoft.Web/serverfarms",
    "function-app": "Microsoft.Web/sites", "digital-twins": "Microsoft.DigitalTwins/digitalTwinsInstances",
    "grafana": "Microsoft.Dashboard/grafana"}
AWS_TYPES = {"lambda": "lambda:function", "iot-topic-rule": "iot:topic-rule", "iot-device": "iot:thing",
             "dynamodb-table": "dynamodb:table", "s3-bucket": "s3:bucket", "schedule": "events:rule"}


def planned(plan: Plan) -> Counter[tuple[str, str]]:
    """What the plan's resources are made of in the clouds' inventories."""
    out: Counter[tuple[str, str]] = Counter()
    for r in plan.resources:
        config: Any = r.config
        if r.provider == "azure" and r.kind in AZURE_TYPES:
            out[(AZURE_TYPES[r.kind], config.name)] += 1
            if r.kind == "function-app":  # its Flex package container, in the setup storage account
                out[("Microsoft.Storage/storageAccounts/blobServices/containers", f"pkg-{config.name}".lower())] += 1
        elif isinstance(config, RoleAssignmentConfig):
            principals = 2 if config.scope.kind == "digital-twins" else 1  # the deployer's too
            out[("Microsoft.Authorization/roleAssignments", "*")] += principals * len(config.role_definition_ids)
        elif r.provider == "azure" and r.kind == "grafana-datasource":
            out[("Microsoft.Authorization/roleAssignments", "*")] += 1  # the deployer's Grafana Admin
        elif r.provider == "aws" and r.kind in AWS_TYPES:
            out[(AWS_TYPES[r.kind], config.name)] += 1
            if r.kind == "lambda":
                out[("iam:role", config.role_name)] += 1
            if r.kind == "iot-device":
                out[("iot:policy", config.policy_name)] += 1
                out[("iot:certificate", "*")] += 1
    return out


def test_killed_after_each_kind_of_call_the_clouds_hold_exactly_the_plan(sandbox: Sandbox, tmp_path: Path) -> None:
    plan = build_plan(spec_from_dict(SPEC))
    switch = KillSwitch(list(DEPLOY_KINDS))
    switch.install(sandbox.ctx.request_log)
    host = Host(sandbox.state_dir, tmp_path / "host", tmp_path / "host.log")
    host.start(switch)
    try:
        status, body = host.request("POST", "api/deployments", SPEC)
        assert status == 202, body
        view = host.run(body["id"], switch, timeout=600)
        assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
        missed = [k.name for k in switch.armed]
        assert not missed, f"never called, so never killed after: {missed}"
        assert inventory(sandbox) == planned(plan), "extra or missing objects after the kills"
        # Each resource was made by this deployment: `created`, even when a killed attempt made it.
        actions = {r["id"]: r["action"] for r in view["resources"]}
        assert set(actions.values()) == {"created"}, actions

        destroy: list[Kind] = list(DESTROY_KINDS)
        switch.armed = destroy
        status, body = host.request("DELETE", f"api/twins/{TWIN}")
        assert status == 202, body
        view = host.run(body["id"], switch, timeout=600)
        assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
        missed = [k.name for k in switch.armed]
        assert not missed, f"never called, so never killed after: {missed}"
        assert inventory(sandbox) == Counter(), "left over after the destroy"
        assert len(switch.fired) == len(DEPLOY_KINDS) + len(DESTROY_KINDS)
    finally:
        switch.active = False
        host.stop()
