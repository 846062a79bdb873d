"""L5 (kind `grafana-datasource`): the hot-reader datasource in the twin's Amazon Managed Grafana
workspace (JSON API plugin, proxy access), calling the hot reader with the inter-cloud token in
the `X-Inter-Cloud-Token` header, kept in `secureJsonData` (Grafana never returns it).

Grafana's own HTTP API is reached with a short-lived workspace API key (5 minutes), reused
while it is valid so that a reconcile that changes nothing writes nothing. The token cannot be read back, so a SHA-256 of it is kept in
`jsonData.tokenSha256` and the datasource is rewritten only when the URL or token changed.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from activities.errors import PermanentError, TransientError
from activities.providers.aws._common import cfg, client, clouds, name_of
from activities.providers.grafana import datasource_body, needs_write
from activities.registry import Provider, register
from activities.types import EnsureResult, ReadResult, ResourceCall
from shared.contracts import INTER_CLOUD_TOKEN_HEADER, Setting

TOKEN_HEADER = INTER_CLOUD_TOKEN_HEADER
URL_SETTING, TOKEN_SETTING = Setting.DATASOURCE_URL, Setting.DATASOURCE_TOKEN
KEY_SECONDS = 300
HTTP_TIMEOUT_S = 30


def wanted_body(call: ResourceCall, current: dict[str, Any] | None) -> dict[str, Any]:
    """The datasource from what is known now: the hot reader's URL is late-bound (propagation
    writes it once the reader exists), so until then the datasource exists without one."""
    token = call.settings.get(TOKEN_SETTING)
    if not token:
        raise TransientError(f"datasource {name_of(call)}: the inter-cloud token is not known yet")
    return datasource_body(name_of(call), call.settings.get(URL_SETTING), token,
                           str(cfg(call, "type", "marcusolsson-json-datasource")), str(cfg(call, "access", "proxy")),
                           current)


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
        self._tls = clouds().ssl_context()

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._key}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S, context=self._tls) as response:
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
    yield GrafanaApi(endpoint, _api_key(call, str(ws["id"]), endpoint))


# Workspace API keys by endpoint: (key, expiry). A key is reused for most of its life, so a
# reconcile that changes nothing makes no write at all (not even a key); it expires by itself.
_keys: dict[str, tuple[str, float]] = {}
_keys_lock = threading.Lock()
KEY_REUSE_MARGIN_SECONDS = 60


def _api_key(call: ResourceCall, workspace_id: str, endpoint: str) -> str:
    with _keys_lock:
        cached = _keys.get(endpoint)
        if cached is not None and cached[1] - KEY_REUSE_MARGIN_SECONDS > time.time():
            return cached[0]
        key_name = f"twin-control-plane-{uuid.uuid4().hex[:12]}"
        key = client("grafana", call).create_workspace_api_key(
            keyName=key_name, keyRole="ADMIN", secondsToLive=KEY_SECONDS, workspaceId=workspace_id)["key"]
        _keys[endpoint] = (key, time.time() + KEY_SECONDS)
        return str(key)


@register("aws", "grafana-datasource")
class GrafanaDatasource(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        with grafana_api(call) as api:
            if api is None:
                raise TransientError(f"Grafana workspace {cfg(call, 'grafana')} does not exist yet")
            current = api.find(name_of(call))
            wanted = wanted_body(call, current)
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
