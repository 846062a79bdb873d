"""State of the Amazon Managed Grafana stand-in: workspaces and their API keys.

A workspace is CREATING until the profile's provisioning time for `aws/grafana/workspace`
has passed, then ACTIVE (or CREATION_FAILED when the profile fails this operation once: the
caller deletes it and creates it again, which then succeeds). API keys can only be made on an ACTIVE workspace (ConflictException
otherwise, as AWS answers for a workspace in a transitional state); key names are unique per
workspace. Deleting a workspace answers DELETING and removes it.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.aws.backends import ArnTagging, RegionalBackends
from sandbox.aws.protocol import ACCOUNT_ID
from sandbox.aws.routing import ConflictException, ResourceNotFoundException, ValidationException
from sandbox.core.profiles import Faults

WORKSPACE_KIND = "aws/grafana/workspace"
DEFAULT_GRAFANA_VERSION = "10.4"
GRAFANA_VERSIONS = ("8.4", "9.4", "10.4")

_ACCOUNT_ACCESS = {"CURRENT_ACCOUNT", "ORGANIZATION"}
_PERMISSION_TYPES = {"CUSTOMER_MANAGED", "SERVICE_MANAGED"}
_AUTH_PROVIDERS = {"AWS_SSO", "SAML"}
_KEY_ROLES = {"ADMIN", "EDITOR", "VIEWER"}
_NAME_RE = re.compile(r"[a-zA-Z0-9\-._~]{1,255}")
_KEY_NAME_MAX = 100
_MAX_SECONDS_TO_LIVE = 2592000  # 30 days, the API's limit


@dataclass
class ApiKey:
    name: str
    role: str
    expires_at: float
    key: str = ""  # the secret handed out once; checked by the workspace's Grafana data plane


@dataclass
class GrafanaWorkspace:
    workspace_id: str
    region: str
    name: str | None
    description: str
    account_access_type: str
    permission_type: str
    authentication_providers: list[str]
    role_arn: str | None
    data_sources: list[str]
    notification_destinations: list[str]
    grafana_version: str
    tags: dict[str, str]
    created: float
    modified: float
    ready_at: float
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    next_key_id: int = 1
    # The profile made this creation fail (fail-once LRO): CREATION_FAILED instead of ACTIVE.
    failed: bool = False
    # Where the sandbox serves this workspace's Grafana HTTP API (host and path), if it does.
    served_at: str = ""

    @property
    def endpoint(self) -> str:
        return self.served_at or f"{self.workspace_id}.grafana-workspace.{self.region}.amazonaws.com"

    def api_key_valid(self, presented: str) -> bool:
        now = time.time()
        return any(k.expires_at > now and k.key and hmac.compare_digest(k.key, presented)
                   for k in list(self.api_keys.values()))

    @property
    def arn(self) -> str:
        return f"arn:aws:grafana:{self.region}:{ACCOUNT_ID}:/workspaces/{self.workspace_id}"

    def status(self, now: float) -> str:
        if now < self.ready_at:
            return "CREATING"
        return "CREATION_FAILED" if self.failed else "ACTIVE"


class GrafanaBackend(ArnTagging):
    def __init__(self, region: str, faults: Faults, data_plane: Callable[[], Any] | None = None) -> None:
        self.region = region
        self._faults = faults
        # The sandbox's Grafana HTTP API (`sandbox.grafana`), shared with Azure Managed Grafana.
        self._data_plane = data_plane
        self._lock = threading.RLock()
        self.workspaces: dict[str, GrafanaWorkspace] = {}

    def _workspace(self, workspace_id: str) -> GrafanaWorkspace:
        ws = self.workspaces.get(workspace_id)
        if ws is None:
            raise ResourceNotFoundException(f"Workspace {workspace_id} not found")
        return ws

    def create_workspace(self, body: dict[str, Any]) -> dict[str, Any]:
        access = body.get("accountAccessType")
        if access not in _ACCOUNT_ACCESS:
            raise ValidationException(f"accountAccessType must be one of {', '.join(sorted(_ACCOUNT_ACCESS))}")
        permission = body.get("permissionType")
        if permission not in _PERMISSION_TYPES:
            raise ValidationException(f"permissionType must be one of {', '.join(sorted(_PERMISSION_TYPES))}")
        providers = body.get("authenticationProviders")
        if not isinstance(providers, list) or not providers or not set(providers) <= _AUTH_PROVIDERS:
            raise ValidationException(
                f"authenticationProviders must be a non-empty list of {', '.join(sorted(_AUTH_PROVIDERS))}"
            )
        name = body.get("workspaceName")
        if name is not None and (not isinstance(name, str) or not _NAME_RE.fullmatch(name)):
            raise ValidationException(f"workspaceName {name!r} must match {_NAME_RE.pattern}")
        version = body.get("grafanaVersion") or DEFAULT_GRAFANA_VERSION
        if version not in GRAFANA_VERSIONS:
            raise ValidationException(f"grafanaVersion must be one of {', '.join(GRAFANA_VERSIONS)}")
        with self._lock:
            if name is not None and any(w.name == name for w in self.workspaces.values()):
                raise ConflictException(f"A workspace named {name} already exists")
            now = time.time()
            workspace_id = "g-" + secrets.token_hex(5)
            ws = GrafanaWorkspace(
                workspace_id=workspace_id,
                region=self.region,
                name=name,
                description=body.get("workspaceDescription", ""),
                account_access_type=access,
                permission_type=permission,
                authentication_providers=list(providers),
                role_arn=body.get("workspaceRoleArn"),
                data_sources=list(body.get("workspaceDataSources") or []),
                notification_destinations=list(body.get("workspaceNotificationDestinations") or []),
                grafana_version=version,
                tags=dict(body.get("tags") or {}),
                created=now,
                modified=now,
                ready_at=now + self._faults.provisioning_seconds(WORKSPACE_KIND),
                failed=self._faults.fail_once(f"{WORKSPACE_KIND}/{self.region}/{name or workspace_id}"),
            )
            plane = self._data_plane() if self._data_plane is not None else None
            if plane is not None:
                ws.served_at = plane.add_api_key_workspace(workspace_id, ws.arn, ws.api_key_valid)
            self.workspaces[workspace_id] = ws
            return {"workspace": self._description(ws, now)}

    def _summary(self, ws: GrafanaWorkspace, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": ws.workspace_id,
            "created": ws.created,
            "modified": ws.modified,
            "endpoint": ws.endpoint,
            "grafanaVersion": ws.grafana_version,
            "status": ws.status(now),
            "authentication": {"providers": list(ws.authentication_providers)},
            "notificationDestinations": list(ws.notification_destinations),
            "description": ws.description,
            "tags": dict(ws.tags),
        }
        if ws.name is not None:
            out["name"] = ws.name
        return out

    def _description(self, ws: GrafanaWorkspace, now: float, status: str | None = None) -> dict[str, Any]:
        out = self._summary(ws, now)
        out.update(
            {
                "accountAccessType": ws.account_access_type,
                "permissionType": ws.permission_type,
                "dataSources": list(ws.data_sources),
                "licenseType": "BASIC",
            }
        )
        if ws.role_arn:
            out["workspaceRoleArn"] = ws.role_arn
        if status is not None:
            out["status"] = status
        return out

    def describe_workspace(self, workspace_id: str) -> dict[str, Any]:
        with self._lock:
            return {"workspace": self._description(self._workspace(workspace_id), time.time())}

    def list_workspaces(self, max_results: str | None, next_token: str | None) -> dict[str, Any]:
        try:
            limit = int(max_results) if max_results else 100
            start = int(next_token) if next_token else 0
        except ValueError:
            raise ValidationException("maxResults and nextToken must be integers") from None
        if not 1 <= limit <= 100:
            raise ValidationException("maxResults must be between 1 and 100")
        with self._lock:
            now = time.time()
            items = [self._summary(w, now) for w in sorted(self.workspaces.values(), key=lambda w: w.created)]
        out: dict[str, Any] = {"workspaces": items[start : start + limit]}
        if start + limit < len(items):
            out["nextToken"] = str(start + limit)
        return out

    def delete_workspace(self, workspace_id: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            del self.workspaces[workspace_id]
            if ws.served_at and self._data_plane is not None and (plane := self._data_plane()) is not None:
                plane.remove_workspace(workspace_id)
            return {"workspace": self._description(ws, time.time(), status="DELETING")}

    def create_api_key(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        key_name = body.get("keyName")
        if not isinstance(key_name, str) or not 1 <= len(key_name) <= _KEY_NAME_MAX:
            raise ValidationException(f"keyName must be a string of 1 to {_KEY_NAME_MAX} characters")
        role = body.get("keyRole")
        if role not in _KEY_ROLES:
            raise ValidationException(f"keyRole must be one of {', '.join(sorted(_KEY_ROLES))}")
        ttl = body.get("secondsToLive")
        if not isinstance(ttl, int) or not 1 <= ttl <= _MAX_SECONDS_TO_LIVE:
            raise ValidationException(f"secondsToLive must be an integer from 1 to {_MAX_SECONDS_TO_LIVE}")
        with self._lock:
            ws = self._workspace(workspace_id)
            now = time.time()
            if ws.status(now) != "ACTIVE":
                raise ConflictException(f"Workspace {workspace_id} is {ws.status(now)}, not ACTIVE")
            live = {n: k for n, k in ws.api_keys.items() if k.expires_at > now}
            if key_name in live:
                raise ConflictException(f"An API key named {key_name} already exists in {workspace_id}")
            ws.api_keys = live
            # Grafana's own key format: base64 of {"k": secret, "n": name, "id": org id}.
            raw = json.dumps({"k": secrets.token_urlsafe(24), "n": key_name, "id": ws.next_key_id})
            ws.next_key_id += 1
            key = base64.b64encode(raw.encode()).decode()
            ws.api_keys[key_name] = ApiKey(key_name, role, now + ttl, key)
            return {"key": key, "keyName": key_name, "workspaceId": workspace_id}

    def delete_api_key(self, workspace_id: str, key_name: str) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            if key_name not in ws.api_keys:
                raise ResourceNotFoundException(f"API key {key_name} not found in workspace {workspace_id}")
            del ws.api_keys[key_name]
            return {"keyName": key_name, "workspaceId": workspace_id}

    def update_workspace(self, workspace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(workspace_id)
            now = time.time()
            if ws.status(now) != "ACTIVE":
                raise ConflictException(f"Workspace {workspace_id} is {ws.status(now)}, not ACTIVE")
            if "accountAccessType" in body:
                if body["accountAccessType"] not in _ACCOUNT_ACCESS:
                    raise ValidationException(f"accountAccessType must be one of {', '.join(sorted(_ACCOUNT_ACCESS))}")
                ws.account_access_type = body["accountAccessType"]
            if "permissionType" in body:
                if body["permissionType"] not in _PERMISSION_TYPES:
                    raise ValidationException(f"permissionType must be one of {', '.join(sorted(_PERMISSION_TYPES))}")
                ws.permission_type = body["permissionType"]
            if "workspaceName" in body:
                name = body["workspaceName"]
                if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                    raise ValidationException(f"workspaceName {name!r} must match {_NAME_RE.pattern}")
                ws.name = name
            for key, attr in (
                ("workspaceDescription", "description"),
                ("workspaceRoleArn", "role_arn"),
            ):
                if key in body:
                    setattr(ws, attr, body[key])
            if "workspaceDataSources" in body:
                ws.data_sources = list(body["workspaceDataSources"] or [])
            if "workspaceNotificationDestinations" in body:
                ws.notification_destinations = list(body["workspaceNotificationDestinations"] or [])
            ws.modified = now
            return {"workspace": self._description(ws, now)}

    def _tagged(self, arn: Any) -> GrafanaWorkspace:
        for ws in self.workspaces.values():
            if ws.arn == arn:
                return ws
        raise ResourceNotFoundException(f"Resource {arn} not found")

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"cloud": "aws", "type": "grafana:workspace", "id": w.arn} for w in self.workspaces.values()]


class GrafanaBackends(RegionalBackends[GrafanaBackend]):
    def __init__(self, faults: Faults, data_plane: Callable[[], Any] | None = None) -> None:
        super().__init__(lambda region, f: GrafanaBackend(region, f, data_plane), faults)
