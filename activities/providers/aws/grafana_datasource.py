"""L5 (kind `grafana-datasource`): the hot-reader datasource in the twin's Amazon Managed Grafana
workspace (JSON API plugin, proxy access), calling the hot reader with the inter-cloud token in
the `X-Inter-Cloud-Token` header, kept in `secureJsonData` (Grafana never returns it).

The token cannot be read back, so a SHA-256 of it is kept in `jsonData.tokenSha256` and the
datasource is rewritten only when the URL or token changed.

Grafana's own HTTP API is reached with a workspace API key. Creating one is a mutating AWS call
(`grafana:CreateWorkspaceApiKey`), so a key lives 30 days (the API's maximum) and is kept in AWS
Secrets Manager, one secret per workspace (`twin-control-plane/{workspace}/grafana-api-key`), with
its key name, workspace id and expiry. Any process reads it (GetSecretValue, not mutating) and
reuses it while more than a day of life is left, so a reconcile that changes nothing, even from a
new process, writes nothing. Only otherwise is a new key (unique name) created, stored with
PutSecretValue, and the previous one deleted. A key Grafana rejects (401) is replaced once.
Deleting the datasource deletes the key and the secret. The key is never logged nor put in an
error message. A new key's name is written to the secret (`pending`) before the key is made, so
a crash between making it and storing it leaves a key the next renewal (or the delete) finds
and deletes, not an admin key alive for 30 days that nothing knows of.

AWS permissions this needs: `grafana:ListWorkspaces`, `grafana:CreateWorkspaceApiKey`,
`grafana:DeleteWorkspaceApiKey`, and on `arn:aws:secretsmanager:*:*:secret:twin-control-plane/*`
only: `secretsmanager:GetSecretValue`, `CreateSecret`, `PutSecretValue`, `TagResource` (tags on
create), `DeleteSecret`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from activities.providers.aws._common import client, clouds, error_code, is_not_found, tag_list
from activities.providers.aws.grafana import workspace_tags
from activities.providers.grafana import datasource_body, needs_write
from activities.providers.typed import TypedProvider, creating, may_delete, require_own, to_create
from activities.registry import register
from shared.contracts import INTER_CLOUD_TOKEN_HEADER, Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import EnsureResult, ReadResult, ResourceCall
from shared.resources.aws import AwsGrafanaDatasourceConfig

TOKEN_HEADER = INTER_CLOUD_TOKEN_HEADER
URL_SETTING, TOKEN_SETTING = Setting.DATASOURCE_URL, Setting.DATASOURCE_TOKEN
# CreateWorkspaceApiKey's `secondsToLive` maximum (30 days).
KEY_SECONDS = 30 * 24 * 3600
# A key with less life than this left is replaced: far longer than any reconcile that uses it.
KEY_RENEW_MARGIN_SECONDS = 24 * 3600
# A key made for one delete and deleted right after it.
ONE_CALL_KEY_SECONDS = 300
KEY_ROLE = "ADMIN"
KEY_NAME_PREFIX = "twin-control-plane-"
SECRET_PREFIX = "twin-control-plane"
HTTP_TIMEOUT_S = 30


def wanted_body(call: ResourceCall, config: AwsGrafanaDatasourceConfig, current: dict[str, Any] | None) -> dict[str, Any]:
    """The datasource from what is known now: the hot reader's URL is late-bound (propagation
    writes it once the reader exists), so until then the datasource exists without one."""
    token = call.settings.get(TOKEN_SETTING)
    if not token:
        raise TransientError(f"datasource {config.name}: the inter-cloud token is not known yet")
    return datasource_body(config.name, call.settings.get(URL_SETTING), token, config.type, config.access, current)


def secret_name(config: AwsGrafanaDatasourceConfig) -> str:
    """The Secrets Manager secret holding the workspace's API key. Derived from the workspace
    name (`AwsNaming.grafana_workspace()`, `{twin}-grafana`), under one prefix so a policy can
    grant exactly `secret:twin-control-plane/*`."""
    return f"{SECRET_PREFIX}/{config.grafana}/grafana-api-key"


def workspace(config: AwsGrafanaDatasourceConfig) -> dict[str, Any] | None:
    """The Grafana workspace named in config.grafana (summary), or None."""
    gf = client("grafana", config.region)
    wanted = config.grafana
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


class SecretPendingDeletion(PermanentError):
    """The key's secret is scheduled for deletion (by hand: ours are deleted without recovery)."""


# --- the workspace API key, kept in Secrets Manager -------------------------------------------


@dataclass(frozen=True)
class StoredKey:
    """A workspace API key as the secret holds it."""

    key: str
    key_name: str
    workspace_id: str
    expires_at: float

    def usable(self, workspace_id: str, now: float | None = None) -> bool:
        """For this workspace (a re-created workspace has a new id) with enough life left."""
        moment = time.time() if now is None else now
        return self.workspace_id == workspace_id and self.expires_at - KEY_RENEW_MARGIN_SECONDS > moment

    def to_secret(self) -> str:
        return json.dumps({"key": self.key, "keyName": self.key_name, "workspaceId": self.workspace_id,
                           "expiresAt": self.expires_at}, sort_keys=True)

    @classmethod
    def from_secret(cls, text: Any) -> StoredKey | None:
        """The stored key, or None for a value that is not one (then it is replaced)."""
        try:
            doc = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        key, key_name, ws, expires = doc.get("key"), doc.get("keyName"), doc.get("workspaceId"), doc.get("expiresAt")
        if not (isinstance(key, str) and key and isinstance(key_name, str) and isinstance(ws, str)
                and isinstance(expires, int | float)):
            return None
        return cls(key, key_name, ws, float(expires))


# Keys this process has read or made, by secret name: a reconcile in the same process does not
# even read the secret. `forget_cached_keys()` empties it (a new process starts empty).
_keys: dict[str, StoredKey] = {}
_keys_lock = threading.Lock()
# One lock per secret: parallel activities of one workspace make at most one new key.
_secret_locks: dict[str, threading.Lock] = {}


def forget_cached_keys() -> None:
    """Drop the keys cached in this process, as a new process would start."""
    with _keys_lock:
        _keys.clear()


def _secret_lock(name: str) -> threading.Lock:
    with _keys_lock:
        return _secret_locks.setdefault(name, threading.Lock())


def pending_key(text: Any) -> tuple[str, str] | None:
    """(key name, workspace id) of a key announced in the secret but not stored (yet)."""
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    pending = doc.get("pending") if isinstance(doc, dict) else None
    if not isinstance(pending, dict):
        return None
    key_name, ws = pending.get("keyName"), pending.get("workspaceId")
    return (key_name, ws) if isinstance(key_name, str) and isinstance(ws, str) else None


def _read_secret(region: str, name: str) -> tuple[bool, StoredKey | None, tuple[str, str] | None]:
    """(whether the secret exists, the key it holds if it holds one, a key announced in it)."""
    from botocore.exceptions import ClientError

    try:
        found = client("secretsmanager", region).get_secret_value(SecretId=name)
    except ClientError as exc:
        if is_not_found(exc):
            return False, None, None
        if error_code(exc) == "InvalidRequestException":
            # Only a secret scheduled for deletion answers this to a read; we force-delete ours.
            raise SecretPendingDeletion(f"secret {name} is scheduled for deletion: restore it (secretsmanager "
                                 "restore-secret) or delete it for good, then re-run") from None
        raise
    text = found.get("SecretString")
    return True, StoredKey.from_secret(text), pending_key(text)


def _store(call: ResourceCall, config: AwsGrafanaDatasourceConfig, name: str, value: str, exists: bool) -> None:
    from botocore.exceptions import ClientError

    sm = client("secretsmanager", config.region)
    if not exists:
        try:
            sm.create_secret(Name=name, SecretString=value, Tags=tag_list(call),
                             Description=f"Grafana API key of workspace {config.grafana} (twin {call.twin})")
            return
        except ClientError as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            # Another process created it meanwhile: ours is newer, write it as a new version.
    sm.put_secret_value(SecretId=name, SecretString=value)


def _announce(stored: StoredKey | None, key_name: str, workspace_id: str) -> str:
    """The secret's value naming the key about to be made, beside the key it holds now."""
    doc = json.loads(stored.to_secret()) if stored is not None else {}
    return json.dumps({**doc, "pending": {"keyName": key_name, "workspaceId": workspace_id}}, sort_keys=True)


def _delete_workspace_key(region: str, workspace_id: str, key_name: str) -> bool:
    """Delete a workspace API key by name; False when it was already gone (expired, deleted)."""
    from botocore.exceptions import ClientError

    try:
        client("grafana", region).delete_workspace_api_key(workspaceId=workspace_id, keyName=key_name)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def new_key_name() -> str:
    return f"{KEY_NAME_PREFIX}{uuid.uuid4().hex[:12]}"  # names are unique per workspace


def _new_key(region: str, workspace_id: str, seconds: int = KEY_SECONDS, key_name: str | None = None) -> StoredKey:
    key_name = key_name or new_key_name()
    made = client("grafana", region).create_workspace_api_key(
        keyName=key_name, keyRole=KEY_ROLE, secondsToLive=seconds, workspaceId=workspace_id)
    # The expiry counts from before the call: never later than Grafana's own.
    return StoredKey(str(made["key"]), key_name, workspace_id, time.time() + seconds - HTTP_TIMEOUT_S)


def _lookup(region: str, name: str, workspace_id: str,
            rejected: str | None) -> tuple[bool, StoredKey | None, str | None, tuple[str, str] | None]:
    """(whether the secret exists, what it holds, a usable key or None, a key announced but not
    stored); under the secret's lock."""
    with _keys_lock:
        cached = _keys.get(name)
    if cached is not None and cached.key != rejected and cached.usable(workspace_id):
        return True, cached, cached.key, None
    exists, stored, pending = _read_secret(region, name)
    if stored is not None and stored.key != rejected and stored.usable(workspace_id):
        with _keys_lock:
            _keys[name] = stored
        return exists, stored, stored.key, pending
    return exists, stored, None, pending


def stored_key(config: AwsGrafanaDatasourceConfig, workspace_id: str) -> str | None:
    """The workspace's usable API key from this process's cache or the secret, else None."""
    name = secret_name(config)
    with _secret_lock(name):
        return _lookup(config.region, name, workspace_id, None)[2]


def api_key(call: ResourceCall, config: AwsGrafanaDatasourceConfig, workspace_id: str,
            rejected: str | None = None) -> str:
    """The workspace's API key: this process's, else the secret's while it has life left, else a
    new one (stored, and the previous one deleted). `rejected`: a key Grafana answered 401 to,
    never returned again (unless another process already stored a different one)."""
    from botocore.exceptions import ClientError

    name = secret_name(config)
    with _secret_lock(name):
        exists, stored, usable, pending = _lookup(config.region, name, workspace_id, rejected)
        if usable is not None:
            return usable
        key_name = new_key_name()
        _store(call, config, name, _announce(stored, key_name, workspace_id), exists)
        fresh = _new_key(config.region, workspace_id, key_name=key_name)
        try:
            _store(call, config, name, fresh.to_secret(), True)
        except BaseException:
            # Kept nowhere, so no one could use it or delete it later: delete it now if we can
            # (the store's own error is the one to report).
            with suppress(ClientError):
                _delete_workspace_key(config.region, workspace_id, fresh.key_name)
            raise
        with _keys_lock:
            _keys[name] = fresh
        if pending is not None and pending[1] == workspace_id:
            # Made by an attempt that never stored it (a crash): nothing else can use it.
            with suppress(ClientError):
                _delete_workspace_key(config.region, workspace_id, pending[0])
        if stored is not None and stored.workspace_id == workspace_id and stored.key_name != fresh.key_name:
            # Best effort: the new key is stored and works; an old one left behind expires alone.
            with suppress(ClientError):
                _delete_workspace_key(config.region, workspace_id, stored.key_name)
        return fresh.key


def delete_api_key(config: AwsGrafanaDatasourceConfig, workspace_id: str | None) -> bool:
    """Delete the workspace's stored API key (if the workspace still exists) and its secret, for
    good (no recovery window: a re-deploy creates the secret again at once). True if anything
    was there."""
    from botocore.exceptions import ClientError

    name = secret_name(config)
    with _secret_lock(name):
        with _keys_lock:
            _keys.pop(name, None)
        try:
            exists, stored, pending = _read_secret(config.region, name)
        except SecretPendingDeletion:
            exists, stored, pending = True, None, None  # deleted for good below
        if stored is not None and workspace_id is not None and stored.workspace_id == workspace_id:
            _delete_workspace_key(config.region, workspace_id, stored.key_name)
        if pending is not None and workspace_id is not None and pending[1] == workspace_id:
            _delete_workspace_key(config.region, workspace_id, pending[0])
        if exists:
            try:
                client("secretsmanager", config.region).delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
        return exists


# --- Grafana's HTTP API -----------------------------------------------------------------------


class GrafanaApi:
    """Grafana's HTTP API of one workspace, authenticated by a workspace API key. A 401 gets one
    new key (`renew(rejected_key)`) and one retry."""

    def __init__(self, endpoint: str, key: str, renew: Callable[[str], str] | None = None) -> None:
        self.base = f"https://{endpoint}".rstrip("/")
        self._key = key
        self._renew = renew
        self._tls = clouds().ssl_context()

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer = self._send(method, path, body)
        if status == 401 and self._renew is not None:
            renew, self._renew = self._renew, None  # once per API object
            self._key = renew(self._key)
            status, answer = self._send(method, path, body)
        if status == 401:
            raise PermanentError(f"Grafana {method} {path}: HTTP 401 with a new workspace API key "
                                 f"(the key needs role {KEY_ROLE})")
        return status, answer

    def _send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
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
def grafana_api(call: ResourceCall, config: AwsGrafanaDatasourceConfig, ws: dict[str, Any] | None = None,
                keep: bool = True) -> Iterator[GrafanaApi | None]:
    """The workspace's API (None when the workspace no longer exists). `keep=False` (a delete):
    without a stored key, use a short-lived one for this call only and delete it after, rather
    than store a key that is about to be deleted with its secret."""
    ws = workspace(config) if ws is None else ws
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
    workspace_id = str(ws["id"])
    if keep:
        yield GrafanaApi(endpoint, api_key(call, config, workspace_id),
                         renew=lambda rejected: api_key(call, config, workspace_id, rejected=rejected))
        return
    try:
        found = stored_key(config, workspace_id)
    except SecretPendingDeletion:
        found = None  # the delete removes it for good
    if found is not None:
        # A rejected stored key is replaced as usual; the caller deletes it with the secret.
        yield GrafanaApi(endpoint, found, renew=lambda rejected: api_key(call, config, workspace_id, rejected=rejected))
        return
    once = _new_key(config.region, workspace_id, ONE_CALL_KEY_SECONDS)
    try:
        yield GrafanaApi(endpoint, once.key)
    finally:
        _delete_workspace_key(config.region, workspace_id, once.key_name)


@register("aws", "grafana-datasource")
class GrafanaDatasource(TypedProvider[AwsGrafanaDatasourceConfig]):
    model = AwsGrafanaDatasourceConfig

    def owned_workspace(self, call: ResourceCall, config: AwsGrafanaDatasourceConfig) -> dict[str, Any] | None:
        """The twin's workspace (the datasource is its owner's); another twin's is refused."""
        ws = workspace(config)
        if ws is not None:
            require_own(call, config, workspace_tags(config.region, ws), f"Grafana workspace {config.grafana}")
        return ws

    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._reconcile(call, decide=True)

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self._reconcile(call, decide=False)  # the creation `ensure` decided on

    def _reconcile(self, call: ResourceCall, decide: bool) -> EnsureResult:
        """Create or update; with `decide`, a missing datasource is first only decided on (`to_create`)."""
        config = self.config(call)
        with grafana_api(call, config, self.owned_workspace(call, config)) as api:
            if api is None:
                raise TransientError(f"Grafana workspace {config.grafana} does not exist yet")
            current = api.find(config.name)
            wanted = wanted_body(call, config, current)
            if current is None and decide:
                return to_create(f"Grafana datasource {config.name} is being created")
            if not needs_write(current, wanted):
                return EnsureResult(action="created" if creating(call) else "unchanged")
            if current is None:
                status, _ = api.send("POST", "/api/datasources", wanted)
            else:
                status, _ = api.send("PUT", f"/api/datasources/{current['id']}", {**wanted, "id": current["id"]})
            if status not in (200, 201):
                raise PermanentError(f"Grafana refused datasource {config.name}: HTTP {status}")
            return EnsureResult(action="created" if current is None or creating(call) else "updated")

    def apply_settings(self, call: ResourceCall) -> bool:
        return self._reconcile(call, decide=False).action != "unchanged"

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        try:
            with grafana_api(call, config) as api:
                current = api.find(config.name) if api is not None else None
        except NoDataPlane:
            return ReadResult(exists=False, details={"reason": "no Grafana data plane in the sandbox"})
        if current is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, details={"url": current.get("url"), "type": current.get("type")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        ws = workspace(config)
        if ws is not None and not may_delete(call, config, workspace_tags(config.region, ws),
                                             f"Grafana workspace {config.grafana}"):
            return EnsureResult(action="absent")  # another twin's workspace: its datasource and key are not ours
        status = 404
        try:
            with grafana_api(call, config, ws, keep=False) as api:
                if api is not None:
                    status, _ = api.send("DELETE", f"/api/datasources/name/{urllib.parse.quote(config.name, safe='')}")
        except NoDataPlane:
            pass  # it could never have been created there
        # The key only served this datasource: it and its secret go with it.
        delete_api_key(config, str(ws["id"]) if ws is not None else None)
        return EnsureResult(action="deleted" if status == 200 else "absent")
