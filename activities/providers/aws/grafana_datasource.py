"""L5 (kind `grafana-datasource`): the hot-reader datasource in the twin's Amazon Managed Grafana
workspace (JSON API plugin, proxy access), calling the hot reader with the inter-cloud token in
the `X-Inter-Cloud-Token` header, kept in `secureJsonData` (Grafana never returns it).

Grafana's own HTTP API is reached with a workspace API key that lives for one activity call
(created, used, deleted). The token cannot be read back, so a SHA-256 of it is kept in
`jsonData.tokenSha256` and the datasource is rewritten only when the URL or token changed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from activities.errors import PermanentError, TransientError
from activities.providers.aws._common import cfg, client, clouds, ignore_missing, name_of
from activities.providers.control import fingerprint as token_hash
from activities.registry import Provider, register
from activities.types import EnsureResult, ReadResult, ResourceCall
from shared.contracts import INTER_CLOUD_TOKEN_HEADER, Setting

TOKEN_HEADER = INTER_CLOUD_TOKEN_HEADER
URL_SETTING, TOKEN_SETTING = Setting.DATASOURCE_URL, Setting.DATASOURCE_TOKEN
KEY_SECONDS = 300
HTTP_TIMEOUT_S = 30


def wanted_body(call: ResourceCall) -> dict[str, Any]:
    url, token = call.settings.get(URL_SETTING), call.settings.get(TOKEN_SETTING)
    if not url or not token:
        raise TransientError(f"datasource {name_of(call)}: the hot reader URL or the token is not known yet")
    return {
        "name": name_of(call), "type": str(cfg(call, "type", "marcusolsson-json-datasource")),
        "access": str(cfg(call, "access", "proxy")), "url": url, "isDefault": False,
        "jsonData": {"httpHeaderName1": TOKEN_HEADER, "tokenSha256": token_hash(token)},
        "secureJsonData": {"httpHeaderValue1": token},
    }


def needs_write(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if current is None:
        return True
    if any(current.get(k) != wanted[k] for k in ("type", "access", "url")):
        return True
    have = current.get("jsonData") or {}
    return any(have.get(k) != v for k, v in wanted["jsonData"].items())


def workspace(call: ResourceCall) -> dict[str, Any] | None:
    """The Grafana workspace named in config.grafana (summary), or None."""
    gf = client("grafana", call)
    wanted = str(cfg(call, "grafana"))
    token: str | None = None
    while True:
        page = gf.list_workspaces(**({"nextToken": token} if token else {}))
        for ws in page.get("workspaces") or []:
            if ws.get("name") == wanted and ws.get("status") != "DELETING":
                return dict(ws)
        token = page.get("nextToken")
        if not token:
            return None


class NoDataPlane(PermanentError):
    """The sandbox has no Grafana HTTP API: nothing can exist there, nothing can be created."""


class GrafanaApi:
    """Grafana's HTTP API of one workspace, authenticated by a short-lived workspace API key."""

    def __init__(self, endpoint: str, key: str) -> None:
        self.base = f"https://{endpoint}".rstrip("/")
        self._key = key

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._key}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 500, 502, 503, 504):
                raise TransientError(f"Grafana {method} {path}: HTTP {exc.code}") from None
            return exc.code, None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise TransientError(f"Grafana {method} {path}: {type(exc).__name__}") from None

    def find(self, name: str) -> dict[str, Any] | None:
        status, body = self.send("GET", f"/api/datasources/name/{urllib.parse.quote(name, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise PermanentError(f"Grafana GET datasource {name}: HTTP {status}")
        return dict(body or {})


@contextmanager
def grafana_api(call: ResourceCall) -> Iterator[GrafanaApi | None]:
    """The workspace's API (None when the workspace no longer exists)."""
    ws = workspace(call)
    if ws is None:
        yield None
        return
    if ws.get("status") != "ACTIVE":
        raise TransientError(f"Grafana workspace {ws.get('name')} is {ws.get('status')}, not ACTIVE yet")
    endpoint = str(ws["endpoint"])
    if clouds().is_sandbox and not endpoint.startswith(("127.0.0.1", "localhost")):
        raise NoDataPlane(
            f"the sandbox does not serve the Managed Grafana data plane (https://{endpoint}/api/datasources); "
            "the datasource cannot be created locally"
        )
    gf = client("grafana", call)
    key_name = f"twin-control-plane-{uuid.uuid4().hex[:12]}"
    key = gf.create_workspace_api_key(keyName=key_name, keyRole="ADMIN", secondsToLive=KEY_SECONDS,
                                      workspaceId=ws["id"])["key"]
    try:
        yield GrafanaApi(endpoint, key)
    finally:
        ignore_missing(lambda: gf.delete_workspace_api_key(keyName=key_name, workspaceId=ws["id"]))


@register("aws", "grafana-datasource")
class GrafanaDatasource(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        wanted = wanted_body(call)
        with grafana_api(call) as api:
            if api is None:
                raise TransientError(f"Grafana workspace {cfg(call, 'grafana')} does not exist yet")
            current = api.find(name_of(call))
            if not needs_write(current, wanted):
                return EnsureResult(action="unchanged")
            if current is None:
                status, _ = api.send("POST", "/api/datasources", wanted)
            else:
                status, _ = api.send("PUT", f"/api/datasources/{current['id']}", {**wanted, "id": current["id"]})
            if status not in (200, 201):
                raise PermanentError(f"Grafana refused datasource {name_of(call)}: HTTP {status}")
            return EnsureResult(action="created" if current is None else "updated")

    def apply_settings(self, call: ResourceCall) -> bool:
        return self.ensure(call).action != "unchanged"

    def read(self, call: ResourceCall) -> ReadResult:
        try:
            with grafana_api(call) as api:
                current = api.find(name_of(call)) if api is not None else None
        except NoDataPlane:
            return ReadResult(exists=False, details={"reason": "no Grafana data plane in the sandbox"})
        if current is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, details={"url": current.get("url"), "type": current.get("type")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        try:
            with grafana_api(call) as api:
                if api is None:
                    return EnsureResult(action="absent")
                status, _ = api.send("DELETE", f"/api/datasources/name/{urllib.parse.quote(name_of(call), safe='')}")
        except NoDataPlane:
            return EnsureResult(action="absent")  # it could never have been created there
        return EnsureResult(action="deleted" if status == 200 else "absent")
