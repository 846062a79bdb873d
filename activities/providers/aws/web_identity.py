"""The AWS side of the control plane's web identity federation (`install --aws-account`): an
IAM OpenID Connect provider trusting the Entra tenant's token issuer, and the role the control
plane's managed identity assumes with STS `AssumeRoleWithWebIdentity` (its trust policy names
the provider, the audience and the identity's object id as `sub`; one inline least-privilege
policy). No AWS secret is created or stored: the role is the only way in.

IAM is global (no region); both are tagged with the control plane as their twin.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from activities.providers.aws._common import (
    AwsResource,
    account_id,
    canonical,
    client,
    get_or_none,
    ignore_missing,
    missing_tags,
    tag_list,
)
from activities.providers.aws._iam import POLICY_NAME, delete_role, policy
from activities.registry import register
from shared.contracts import Setting
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import OidcProviderConfig, WebIdentityRoleConfig


def issuer_path(url: str) -> str:
    """`host/path` of an issuer URL, as IAM names the provider and its condition keys (a
    trailing slash, as Entra's v1 issuer has, is kept)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def provider_arn(url: str) -> str:
    return f"arn:aws:iam::{account_id()}:oidc-provider/{issuer_path(url)}"


@register("aws", "oidc-provider")
class OidcProvider(AwsResource[OidcProviderConfig]):
    model = OidcProviderConfig
    label = "IAM OIDC provider"

    def describe(self, call: ResourceCall, config: OidcProviderConfig) -> Any:
        return get_or_none(lambda: client("iam").get_open_id_connect_provider(
            OpenIDConnectProviderArn=provider_arn(config.url)))

    def converge(self, call: ResourceCall, config: OidcProviderConfig, action: Action) -> EnsureResult:
        iam = client("iam")
        arn = provider_arn(config.url)
        current = self.describe(call, config)
        if current is None:
            args: dict[str, Any] = {"Url": config.url, "ClientIDList": list(config.client_ids), "Tags": tag_list(call)}
            if config.thumbprints:
                args["ThumbprintList"] = list(config.thumbprints)
            iam.create_open_id_connect_provider(**args)
            return EnsureResult("created")
        have = set(current.get("ClientIDList") or [])
        for audience in sorted(set(config.client_ids) - have):
            iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID=audience)
            action = "updated"
        if config.thumbprints and sorted(current.get("ThumbprintList") or []) != sorted(config.thumbprints):
            iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn,
                                                           ThumbprintList=list(config.thumbprints))
            action = "updated"
        add = missing_tags({t["Key"]: t["Value"] for t in current.get("Tags") or []}, call)
        if add:
            iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=arn,
                                             Tags=[{"Key": k, "Value": v} for k, v in sorted(add.items())])
            action = "updated"
        return EnsureResult(action)

    def owner_tags(self, call: ResourceCall, config: OidcProviderConfig, current: Any) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in current.get("Tags") or []}

    def remove(self, call: ResourceCall, config: OidcProviderConfig, current: Any) -> bool:
        ignore_missing(lambda: client("iam").delete_open_id_connect_provider(
            OpenIDConnectProviderArn=provider_arn(config.url)))
        return True

    def details(self, call: ResourceCall, config: OidcProviderConfig, current: Any) -> dict[str, Any]:
        return {"arn": provider_arn(config.url), "clientIds": current.get("ClientIDList")}


def trust_policy(config: WebIdentityRoleConfig, principal: str) -> dict[str, Any]:
    """Only tokens of the provider's issuer, for the audience, whose subject is the identity."""
    issuer = issuer_path(config.provider_url)
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn(config.provider_url)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{issuer}:aud": config.audience, f"{issuer}:sub": principal}},
        }],
    }


@register("aws", "web-identity-role")
class WebIdentityRole(AwsResource[WebIdentityRoleConfig]):
    model = WebIdentityRoleConfig
    label = "IAM role"

    def describe(self, call: ResourceCall, config: WebIdentityRoleConfig) -> Any:
        found = get_or_none(lambda: client("iam").get_role(RoleName=config.name))
        return None if found is None else found["Role"]

    def _principal(self, call: ResourceCall) -> str:
        principal = call.settings.get(Setting.PRINCIPAL_ID)
        if not principal:
            raise PermanentError(f"{call.resource.id}: the identity to trust (setting {Setting.PRINCIPAL_ID}) is "
                                 "not known yet; the managed identity must be deployed first")
        return str(principal)

    def converge(self, call: ResourceCall, config: WebIdentityRoleConfig, action: Action) -> EnsureResult:
        iam = client("iam")
        trust = trust_policy(config, self._principal(call))
        role = self.describe(call, config)
        if role is None:
            iam.create_role(RoleName=config.name, AssumeRolePolicyDocument=json.dumps(trust),
                            MaxSessionDuration=config.max_session_seconds, Tags=tag_list(call),
                            Description=f"assumed by the control plane {call.twin} with its Azure managed identity")
            action = "created"
        else:
            if canonical(role.get("AssumeRolePolicyDocument") or "{}") != canonical(trust):
                iam.update_assume_role_policy(RoleName=config.name, PolicyDocument=json.dumps(trust))
                action = "updated"
            if int(role.get("MaxSessionDuration") or 3600) != config.max_session_seconds:
                iam.update_role(RoleName=config.name, MaxSessionDuration=config.max_session_seconds)
                action = "updated"
            add = missing_tags({t["Key"]: t["Value"] for t in role.get("Tags") or []}, call)
            if add:
                iam.tag_role(RoleName=config.name, Tags=[{"Key": k, "Value": v} for k, v in sorted(add.items())])
                action = "updated"
        wanted = policy([dict(s) for s in config.policy])
        current = get_or_none(lambda: iam.get_role_policy(RoleName=config.name, PolicyName=POLICY_NAME))
        if current is None or canonical(current.get("PolicyDocument") or "{}") != canonical(wanted):
            iam.put_role_policy(RoleName=config.name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(wanted))
            action = action if action == "created" else "updated"
        return EnsureResult(action, self.outputs(call, config, self.describe(call, config)))

    def apply_settings(self, call: ResourceCall) -> bool:
        """A new identity (its object id changed): the trust policy follows."""
        return self.converge(call, self.config(call), "unchanged").action != "unchanged"

    def outputs(self, call: ResourceCall, config: WebIdentityRoleConfig, current: Any) -> dict[str, str]:
        if current is None:
            return {}
        return {name: str(current["Arn"]) for name in call.resource.produces}

    def owner_tags(self, call: ResourceCall, config: WebIdentityRoleConfig, current: Any) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in current.get("Tags") or []}

    def remove(self, call: ResourceCall, config: WebIdentityRoleConfig, current: Any) -> bool:
        delete_role(call, config.name)
        return True

    def details(self, call: ResourceCall, config: WebIdentityRoleConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("Arn")}
