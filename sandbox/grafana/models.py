"""State of the sandbox's Azure Managed Grafana workspaces: their datasources.

ARM creates workspaces; the hook sets `properties.endpoint = https://127.0.0.1:PORT/grafana/<name>`.
Datasources behave as Grafana's HTTP API does: unique names and uids, a `version` bumped on each
update, `secureJsonData` stored but never returned (only `secureJsonFields: {"<field>": true}`),
and secure fields an update does not mention are kept.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.context import SandboxContext

RESOURCE_TYPE = "Microsoft.Dashboard/grafana"
URL_PREFIX = "/grafana"
GRAFANA_ADMIN_ROLE = "22926164-76b3-42b3-bc55-97df8dab3e41"
# The Entra application of Azure Managed Grafana: tokens are requested for `<this>/.default`.
GRAFANA_AUDIENCES = frozenset({"ce34e7e5-485f-4d76-964f-b3d2b16d1e4f", "api://ce34e7e5-485f-4d76-964f-b3d2b16d1e4f"})
UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
ACCESS_MODES = frozenset({"proxy", "direct"})


class GrafanaError(Exception):
    """A Grafana API error: `{"message": ...}` with a status."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


def not_found() -> GrafanaError:
    return GrafanaError(404, "Data source not found")


@dataclass
class Datasource:
    id: int
    uid: str
    fields: dict[str, Any]
    secure: dict[str, str]
    version: int = 1

    def full(self) -> dict[str, Any]:
        f = self.fields
        return {
            "id": self.id,
            "uid": self.uid,
            "orgId": 1,
            "name": f["name"],
            "type": f["type"],
            "typeLogoUrl": f"public/plugins/{f['type']}/img/logo.svg",
            "access": f["access"],
            "url": f["url"],
            "user": f["user"],
            "database": f["database"],
            "basicAuth": f["basicAuth"],
            "basicAuthUser": f["basicAuthUser"],
            "withCredentials": f["withCredentials"],
            "isDefault": f["isDefault"],
            "jsonData": copy.deepcopy(f["jsonData"]),
            "secureJsonFields": {k: True for k in sorted(self.secure)},
            "version": self.version,
            "readOnly": False,
            "apiVersion": "",
        }

    def summary(self) -> dict[str, Any]:
        full = self.full()
        keep = ("id", "uid", "orgId", "name", "type", "typeLogoUrl", "access", "url", "user", "database",
                "basicAuth", "isDefault", "jsonData", "readOnly")
        return {k: full[k] for k in keep} | {"typeName": full["type"]}


def _fields(body: Any) -> tuple[dict[str, Any], dict[str, str], str | None, int | None]:
    """Validated datasource fields, secure fields, requested uid and expected version of a body."""
    if not isinstance(body, dict):
        raise GrafanaError(400, "bad request data: the body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GrafanaError(400, "bad request data: name is required")
    ds_type = body.get("type")
    if not isinstance(ds_type, str) or not ds_type:
        raise GrafanaError(400, "bad request data: type is required")
    access = body.get("access") or "proxy"
    if access not in ACCESS_MODES:
        raise GrafanaError(400, f"bad request data: access must be 'proxy' or 'direct', got {access!r}")
    json_data = body.get("jsonData") or {}
    if not isinstance(json_data, dict):
        raise GrafanaError(400, "bad request data: jsonData must be an object")
    secure = body.get("secureJsonData") or {}
    if not isinstance(secure, dict) or any(not isinstance(v, str) for v in secure.values()):
        raise GrafanaError(400, "bad request data: secureJsonData must be an object of strings")
    uid = body.get("uid")
    if uid is not None and (not isinstance(uid, str) or not UID_PATTERN.match(uid)):
        raise GrafanaError(400, "uid: at most 40 characters, letters, digits, '-' and '_'")
    version = body.get("version")
    fields = {
        "name": name,
        "type": ds_type,
        "access": access,
        "url": str(body.get("url") or ""),
        "user": str(body.get("user") or ""),
        "database": str(body.get("database") or ""),
        "basicAuth": bool(body.get("basicAuth", False)),
        "basicAuthUser": str(body.get("basicAuthUser") or ""),
        "withCredentials": bool(body.get("withCredentials", False)),
        "isDefault": bool(body.get("isDefault", False)),
        "jsonData": copy.deepcopy(json_data),
    }
    return fields, dict(secure), uid or None, version if isinstance(version, int) and not isinstance(version, bool) else None


@dataclass
class Workspace:
    name: str
    resource_id: str
    # Amazon Managed Grafana workspaces authenticate with workspace API keys (Bearer <key>)
    # instead of Entra tokens and roles: the AWS fake registers a checker for them.
    api_key_valid: Callable[[str], bool] | None = None
    datasources: dict[int, Datasource] = field(default_factory=dict)
    next_id: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)

    def find(self, *, uid: str | None = None, name: str | None = None, ds_id: int | None = None) -> Datasource:
        with self.lock:
            for ds in self.datasources.values():
                if (uid is not None and ds.uid == uid) or (name is not None and ds.fields["name"] == name) or ds.id == ds_id:
                    return ds
        raise not_found()

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted((d.summary() for d in self.datasources.values()), key=lambda d: str(d["name"]).lower())

    def _check_unique(self, fields: dict[str, Any], uid: str | None, except_id: int | None) -> None:
        for ds in self.datasources.values():
            if ds.id == except_id:
                continue
            if ds.fields["name"] == fields["name"]:
                raise GrafanaError(409, "data source with the same name already exists")
            if uid is not None and ds.uid == uid:
                raise GrafanaError(409, "data source with the same uid already exists")

    def _single_default(self, keep: Datasource) -> None:
        if keep.fields["isDefault"]:
            for ds in self.datasources.values():
                if ds is not keep:
                    ds.fields["isDefault"] = False

    def add(self, body: Any) -> Datasource:
        fields, secure, uid, _ = _fields(body)
        with self.lock:
            self._check_unique(fields, uid, None)
            ds = Datasource(self.next_id, uid or secrets.token_hex(7), fields, secure)
            self.next_id += 1
            self.datasources[ds.id] = ds
            self._single_default(ds)
            return ds

    def update(self, current: Datasource, body: Any) -> Datasource:
        fields, secure, uid, version = _fields(body)
        with self.lock:
            if version is not None and version < current.version:
                raise GrafanaError(409, "Datasource has already been updated by someone else. Please reload and try again")
            self._check_unique(fields, uid, current.id)
            current.fields = fields
            # Secure values the update does not mention are kept, as Grafana does.
            current.secure = {**current.secure, **secure}
            if uid is not None:
                current.uid = uid
            current.version += 1
            self._single_default(current)
            return current

    def delete(self, ds: Datasource) -> None:
        with self.lock:
            self.datasources.pop(ds.id, None)


class _Hooks:
    def __init__(self, owner: GrafanaBackend) -> None:
        self.owner = owner

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        self.owner.on_put(resource_id, resource)

    def on_delete(self, resource_id: str) -> None:
        self.owner.on_delete(resource_id)


class GrafanaBackend:
    """Every Managed Grafana workspace of one sandbox."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.lock = threading.RLock()
        self.workspaces: dict[str, Workspace] = {}  # lower-case name -> workspace
        self.hooks = _Hooks(self)

    def reset(self) -> None:
        with self.lock:
            self.workspaces.clear()

    def endpoint(self, name: str) -> str:
        return f"{self.ctx.azure_base_url}{URL_PREFIX}/{name}"

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        with self.lock:
            ws = self.workspaces.get(name.lower())
            if ws is None or ws.resource_id.lower() != resource_id.lower():
                self.workspaces[name.lower()] = Workspace(name, resource_id)
        resource.setdefault("properties", {})["endpoint"] = self.endpoint(name)

    def on_delete(self, resource_id: str) -> None:
        name = resource_id.rstrip("/").rsplit("/", 1)[-1].lower()
        with self.lock:
            ws = self.workspaces.get(name)
            if ws is not None and ws.resource_id.lower() == resource_id.lower():
                del self.workspaces[name]

    def workspace(self, name: str) -> Workspace | None:
        with self.lock:
            return self.workspaces.get(name.lower())

    def add_api_key_workspace(self, name: str, resource_id: str, api_key_valid: Callable[[str], bool]) -> str:
        """Serve an Amazon Managed Grafana workspace here; returns its endpoint (host and path,
        no scheme, as AWS reports `endpoint`)."""
        with self.lock:
            self.workspaces[name.lower()] = Workspace(name, resource_id, api_key_valid)
        return self.endpoint(name).split("://", 1)[1]

    def remove_workspace(self, name: str) -> None:
        with self.lock:
            self.workspaces.pop(name.lower(), None)
