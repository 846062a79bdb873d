"""IAM roles with one least-privilege inline policy each (Lambda functions, TwinMaker, Grafana).

Not a resource kind of its own: a role lives and dies with the resource that assumes it, so
its lifecycle is part of that resource's module. IAM is eventually consistent: a new role may
not be assumable for some seconds; the dependent call (CreateFunction, CreateWorkspace) is
retried through a `TransientError`, never a sleep.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from activities.providers.aws._common import (
    canonical,
    client,
    get_or_none,
    ignore_missing,
    missing_tags,
    tags,
)
from activities.providers.typed import call_owner, refuse_foreign
from shared.engine.types import ResourceCall
from shared.resources.ownership import claim

POLICY_NAME = "least-privilege"


def trust_policy(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def policy(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def allow(actions: list[str], resources: list[str], sid: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": sorted(set(resources))}
    if sid:
        out["Sid"] = sid
    return out


def ensure_role(call: ResourceCall, role_name: str, service: str, statements: list[dict[str, Any]]) -> tuple[str, bool]:
    """Create or reconcile `role_name` (trust `service`, inline policy `statements`).

    Returns the role ARN and whether anything was written.
    """
    iam = client("iam")
    changed = False
    trust = trust_policy(service)
    found = get_or_none(lambda: iam.get_role(RoleName=role_name))
    if found is None:
        created = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"{call.resource.id} of twin {call.twin}",
            Tags=[{"Key": k, "Value": v} for k, v in sorted(tags(call).items())],
        )
        role = created["Role"]
        changed = True
    else:
        role = found["Role"]
        _check_owner(call, role_name, role)
        if canonical(role.get("AssumeRolePolicyDocument") or "{}") != canonical(trust):
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))
            changed = True
        have = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
        add = missing_tags(have, call)
        if add:
            iam.tag_role(RoleName=role_name, Tags=[{"Key": k, "Value": v} for k, v in sorted(add.items())])
            changed = True
    wanted = policy(statements)
    current = get_or_none(lambda: iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME))
    if current is None or canonical(current.get("PolicyDocument") or "{}") != canonical(wanted):
        iam.put_role_policy(RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(wanted))
        changed = True
    return str(role["Arn"]), changed


def _tag_map(role: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in role.get("Tags") or []}


def _check_owner(call: ResourceCall, role_name: str, role: dict[str, Any]) -> None:
    """Refuse a role of another twin (IAM role names are unique in the account and
    case-insensitive: `GREENHOUSE-X-persister` is `greenhouse-x-persister`)."""
    owner = call_owner(call)
    refuse_foreign(call, f"IAM role {role_name}", owner, claim(owner, _tag_map(role)))


def role_left(call: ResourceCall, role_name: str) -> list[str]:
    """`["IAM role <name>"]` while the role exists and is this twin's, else []."""
    found = get_or_none(lambda: client("iam").get_role(RoleName=role_name))
    if found is None or not claim(call_owner(call), _tag_map(found["Role"])).allowed:
        return []
    return [f"IAM role {role_name}"]


def delete_role(call: ResourceCall, role_name: str) -> bool:
    """Delete the role and its policies unless it is another twin's; False if it was already
    gone (or is not this twin's to delete)."""
    iam = client("iam")
    found = get_or_none(lambda: iam.get_role(RoleName=role_name))
    if found is None or not claim(call_owner(call), _tag_map(found["Role"])).allowed:
        return False
    listed = get_or_none(lambda: iam.list_role_policies(RoleName=role_name))
    if listed is None:
        return False
    for name in listed.get("PolicyNames") or []:
        ignore_missing(partial(iam.delete_role_policy, RoleName=role_name, PolicyName=name))
    attached = get_or_none(lambda: iam.list_attached_role_policies(RoleName=role_name)) or {}
    for pol in attached.get("AttachedPolicies") or []:
        ignore_missing(partial(iam.detach_role_policy, RoleName=role_name, PolicyArn=pol["PolicyArn"]))
    return ignore_missing(lambda: iam.delete_role(RoleName=role_name))
