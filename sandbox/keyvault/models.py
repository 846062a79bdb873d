"""State of the sandbox's Azure Key Vaults (secrets only): versions, soft delete, purge, recover.

One `KeyVaultBackend` per sandbox holds every vault. ARM creates, updates and deletes vaults
through the resource hooks (`on_put` / `on_delete`); the data plane (responses.py) calls the
methods of `Vault`, which raise `KeyVaultError` carrying Key Vault's status, code and message.

Secret ids: the SDK (azure-keyvault-secrets 4.x) parses every `id` it receives with
`parse_key_vault_id`, which accepts only `<scheme>://<host>/secrets/<name>[/<version>]`. A vault
served under a path (`https://127.0.0.1:PORT/keyvault/<vault>/`) therefore cannot answer ids of
the form `<vaultUri>secrets/...` (the SDK raises ValueError on them), so ids carry the server's
origin and Key Vault's own path: `https://127.0.0.1:PORT/secrets/<name>/<version>`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.context import SandboxContext

RESOURCE_TYPE = "Microsoft.KeyVault/vaults"
URL_PREFIX = "/keyvault"
AUDIENCES = frozenset({"https://vault.azure.net", "https://vault.azure.net/"})

# Built-in roles (data actions on secrets), as listed in Azure's built-in role definitions.
ADMINISTRATOR_ROLE = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
SECRETS_OFFICER_ROLE = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"
READER_ROLE = "21090545-7ca7-4776-b22c-e363652d74d2"
# What each kind of operation needs under RBAC: writing (set, update, delete, purge, recover),
# reading a value (get), reading metadata only (lists, deleted secrets).
WRITE_ROLES = frozenset({ADMINISTRATOR_ROLE, SECRETS_OFFICER_ROLE})
GET_ROLES = WRITE_ROLES | {SECRETS_USER_ROLE}
METADATA_ROLES = GET_ROLES | {READER_ROLE}

SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# 3-24 characters, letters, digits and hyphens, starting with a letter, ending with a letter or
# digit, no consecutive hyphens.
VAULT_NAME = re.compile(r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
MAX_VALUE_CHARS = 25 * 1024
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 25
DEFAULT_RETENTION_DAYS = 90
DAY = 86400


class KeyVaultError(Exception):
    """A Key Vault error: `{"error": {"code", "message"[, "innererror"]}}` with an HTTP status.

    ARM's hook machinery turns one raised from `on_put` into ARM's error (it reads `status`,
    `code`, `message`)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            err["innererror"] = {"code": self.inner}
        return {"error": err}


def secret_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret "
        "you may be able to recover it using the correct recovery command. For help resolving this issue, "
        "please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def version_not_found(name: str, version: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name}/{version} was not found in this key vault. For help resolving this "
        "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def deleted_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")


def check_name(name: str) -> None:
    if not SECRET_NAME.match(name):
        raise KeyVaultError(
            400,
            "BadParameter",
            f"The request URI contains an invalid name: {name[:200]!r}. A secret name is 1-127 characters of "
            "letters, digits and hyphens (^[0-9a-zA-Z-]+$).",
        )


@dataclass
class SecretVersion:
    version: str
    value: str
    created: int
    updated: int
    enabled: bool = True
    not_before: int | None = None
    expires: int | None = None
    content_type: str | None = None
    tags: dict[str, str] | None = None


@dataclass
class Secret:
    name: str  # as first written; lookups are case-insensitive, as in Key Vault
    versions: list[SecretVersion] = field(default_factory=list)  # oldest first

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]

    def find(self, version: str) -> SecretVersion | None:
        for v in self.versions:
            if v.version == version.lower():
                return v
        return None


@dataclass
class DeletedSecret:
    secret: Secret
    deleted_date: int
    scheduled_purge_date: int


@dataclass
class VaultSettings:
    """What the data plane reads from the ARM resource's properties."""

    tenant_id: str = ""
    rbac: bool = False
    soft_delete: bool = True
    retention_days: int = DEFAULT_RETENTION_DAYS
    purge_protection: bool = False

    @classmethod
    def from_properties(cls, props: dict[str, Any]) -> VaultSettings:
        days = props.get("softDeleteRetentionInDays")
        return cls(
            tenant_id=str(props.get("tenantId") or ""),
            rbac=props.get("enableRbacAuthorization") is True,
            soft_delete=props.get("enableSoftDelete") is not False,
            retention_days=days if isinstance(days, int) and 7 <= days <= 90 else DEFAULT_RETENTION_DAYS,
            purge_protection=props.get("enablePurgeProtection") is True,
        )

    @property
    def recovery_level(self) -> str:
        if not self.soft_delete:
            return "Purgeable"
        custom = "Customized" if self.retention_days < DEFAULT_RETENTION_DAYS else ""
        return f"{custom}Recoverable" + ("" if self.purge_protection else "+Purgeable")


class Vault:
    """One vault's secrets. Every method takes the vault's lock: handlers run on the sandbox loop,
    tests may read from their own thread."""

    def __init__(self, name: str, resource_id: str, settings: VaultSettings, origin: str) -> None:
        self.name = name
        self.resource_id = resource_id
        self.settings = settings
        # `https://127.0.0.1:PORT`: the prefix of every id (see the module docstring).
        self.origin = origin
        self._lock = threading.Lock()
        self._secrets: dict[str, Secret] = {}
        self._deleted: dict[str, DeletedSecret] = {}

    # --- shapes ------------------------------------------------------------------------------

    def secret_id(self, name: str, version: str | None = None) -> str:
        return f"{self.origin}/secrets/{name}" + (f"/{version}" if version else "")

    def attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": self.settings.recovery_level,
        }
        if self.settings.soft_delete:
            attrs["recoverableDays"] = self.settings.retention_days
        if v.not_before is not None:
            attrs["nbf"] = v.not_before
        if v.expires is not None:
            attrs["exp"] = v.expires
        return attrs

    def bundle(self, s: Secret, v: SecretVersion, with_value: bool) -> dict[str, Any]:
        """A SecretBundle (GET/PUT/PATCH/recover) or, with the secret's id only, a list item."""
        out: dict[str, Any] = {}
        if with_value:
            out["value"] = v.value
        out["id"] = self.secret_id(s.name, v.version)
        out["attributes"] = self.attributes(v)
        if v.content_type is not None:
            out["contentType"] = v.content_type
        if v.tags is not None:
            out["tags"] = dict(v.tags)
        return out

    def item(self, s: Secret, v: SecretVersion, versioned: bool) -> dict[str, Any]:
        """A SecretItem: never the value; `GET /secrets` names the secret, `/versions` the version."""
        out = self.bundle(s, v, with_value=False)
        if not versioned:
            out["id"] = self.secret_id(s.name)
        return out

    def deleted_bundle(self, d: DeletedSecret, item: bool = False) -> dict[str, Any]:
        out = self.bundle(d.secret, d.secret.latest, with_value=False)
        if item:
            out["id"] = self.secret_id(d.secret.name)
        out.update(
            {
                "recoveryId": f"{self.origin}/deletedsecrets/{d.secret.name}",
                "deletedDate": d.deleted_date,
                "scheduledPurgeDate": d.scheduled_purge_date,
            }
        )
        return out

    # --- operations ----------------------------------------------------------------------------

    def set_secret(self, name: str, body: Any) -> dict[str, Any]:
        check_name(name)
        if not isinstance(body, dict):
            raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object with a 'value'.")
        value = body.get("value")
        if not isinstance(value, str):
            raise KeyVaultError(400, "BadParameter", "Property 'value' is required and must be a string.")
        if len(value) > MAX_VALUE_CHARS:
            # The length only: the value itself never goes into an error.
            raise KeyVaultError(
                400,
                "BadParameter",
                f"Secret value is too large: {len(value)} characters; the limit is {MAX_VALUE_CHARS}.",
            )
        content_type = _optional_str(body, "contentType")
        tags = _tags(body.get("tags"))
        enabled, nbf, exp = _attributes(body.get("attributes"))
        now = int(time.time())
        with self._lock:
            self._expire_deleted(now)
            key = name.lower()
            if key in self._deleted:
                raise KeyVaultError(
                    409,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                    "in this state, the secret can only be recovered or purged.",
                    inner="ObjectIsDeletedButRecoverable",
                )
            secret = self._secrets.setdefault(key, Secret(name=name))
            version = SecretVersion(
                version=uuid.uuid4().hex,
                value=value,
                created=now,
                updated=now,
                enabled=True if enabled is None else enabled,
                not_before=nbf,
                expires=exp,
                content_type=content_type,
                tags=tags,
            )
            secret.versions.append(version)
            return self.bundle(secret, version, with_value=True)

    def get_secret(self, name: str, version: str | None) -> dict[str, Any]:
        check_name(name)
        with self._lock:
            secret, v = self._version(name, version)
            if not v.enabled:
                raise KeyVaultError(
                    403,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    inner="SecretDisabled",
                )
            return self.bundle(secret, v, with_value=True)

    def update_secret(self, name: str, version: str | None, body: Any) -> dict[str, Any]:
        """PATCH: attributes, tags and content type of one version; the value never changes."""
        check_name(name)
        if not isinstance(body, dict):
            raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object.")
        if "value" in body:
            raise KeyVaultError(
                400, "BadParameter", "A secret's value cannot be updated; set a new version with PUT instead."
            )
        content_type = _optional_str(body, "contentType")
        tags = _tags(body.get("tags"))
        enabled, nbf, exp = _attributes(body.get("attributes"))
        with self._lock:
            secret, v = self._version(name, version)
            if "contentType" in body:
                v.content_type = content_type
            if "tags" in body:
                v.tags = tags
            if enabled is not None:
                v.enabled = enabled
            if nbf is not None:
                v.not_before = nbf
            if exp is not None:
                v.expires = exp
            v.updated = int(time.time())
            return self.bundle(secret, v, with_value=False)

    def list_secrets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.item(s, s.latest, versioned=False) for _, s in sorted(self._secrets.items())]

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        check_name(name)
        with self._lock:
            secret = self._secrets.get(name.lower())
            if secret is None:
                raise secret_not_found(name)
            return [self.item(secret, v, versioned=True) for v in secret.versions]

    def delete_secret(self, name: str) -> dict[str, Any]:
        check_name(name)
        now = int(time.time())
        with self._lock:
            secret = self._secrets.pop(name.lower(), None)
            if secret is None:
                raise secret_not_found(name)
            if not self.settings.soft_delete:
                # Gone at once: no recoveryId, so the SDK's poller is finished from the start.
                return self.bundle(secret, secret.latest, with_value=False)
            deleted = DeletedSecret(secret, now, now + self.settings.retention_days * DAY)
            self._deleted[name.lower()] = deleted
            return self.deleted_bundle(deleted)

    def get_deleted(self, name: str) -> dict[str, Any]:
        check_name(name)
        with self._lock:
            self._expire_deleted(int(time.time()))
            deleted = self._deleted.get(name.lower())
            if deleted is None:
                raise deleted_not_found(name)
            return self.deleted_bundle(deleted)

    def list_deleted(self) -> list[dict[str, Any]]:
        with self._lock:
            self._expire_deleted(int(time.time()))
            return [self.deleted_bundle(d, item=True) for _, d in sorted(self._deleted.items())]

    def purge(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self._deleted.get(name.lower()) is None:
                raise deleted_not_found(name)
            if self.settings.purge_protection:
                raise KeyVaultError(
                    403,
                    "Forbidden",
                    'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault '
                    "service will automatically purge it after the retention period has passed.",
                    inner="PurgeProtectionEnabled",
                )
            del self._deleted[name.lower()]

    def recover(self, name: str) -> dict[str, Any]:
        check_name(name)
        with self._lock:
            deleted = self._deleted.pop(name.lower(), None)
            if deleted is None:
                raise deleted_not_found(name)
            self._secrets[name.lower()] = deleted.secret
            return self.bundle(deleted.secret, deleted.secret.latest, with_value=False)

    def secret_names(self) -> list[str]:
        """Names of the live secrets (for tests and tools; never values)."""
        with self._lock:
            return sorted(s.name for s in self._secrets.values())

    # --- internals ---------------------------------------------------------------------------

    def _version(self, name: str, version: str | None) -> tuple[Secret, SecretVersion]:
        secret = self._secrets.get(name.lower())
        if secret is None:
            raise secret_not_found(name)
        if not version:
            return secret, secret.latest
        v = secret.find(version)
        if v is None:
            raise version_not_found(name, version)
        return secret, v

    def _expire_deleted(self, now: int) -> None:
        """Key Vault purges a deleted secret itself once its scheduled purge date has passed."""
        for key in [k for k, d in self._deleted.items() if d.scheduled_purge_date <= now]:
            del self._deleted[key]


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise KeyVaultError(400, "BadParameter", f"Property '{key}' must be a string.")
    return value


def _tags(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise KeyVaultError(400, "BadParameter", "Property 'tags' must be an object of string values.")
    if len(value) > 15:
        raise KeyVaultError(
            400, "BadParameter", f"A secret can have at most 15 tags; {len(value)} were given."
        )
    return dict(value)


def _attributes(value: Any) -> tuple[bool | None, int | None, int | None]:
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise KeyVaultError(400, "BadParameter", "Property 'attributes' must be an object.")
    enabled = value.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise KeyVaultError(400, "BadParameter", "Property 'attributes.enabled' must be a boolean.")
    times: list[int | None] = []
    for key in ("nbf", "exp"):
        t = value.get(key)
        if t is not None and (isinstance(t, bool) or not isinstance(t, int)):
            raise KeyVaultError(
                400, "BadParameter", f"Property 'attributes.{key}' must be epoch seconds (an integer)."
            )
        times.append(t)
    return enabled, times[0], times[1]


class KeyVaultBackend:
    """All vaults of one sandbox, and the ARM hooks that create, update and drop them."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._by_name: dict[str, Vault] = {}

    # --- ARM hooks -----------------------------------------------------------------------------

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        rid = resource_id.rstrip("/")
        name = rid.rsplit("/", 1)[-1]
        if not VAULT_NAME.match(name):
            raise KeyVaultError(
                400,
                "VaultNameNotValid",
                f"The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. "
                "The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens.",
            )
        props = resource.get("properties")
        settings = VaultSettings.from_properties(props if isinstance(props, dict) else {})
        with self._lock:
            vault = self._by_name.get(name.lower())
            if vault is not None and vault.resource_id.lower() != rid.lower():
                # Vault names are DNS names, global across subscriptions and groups.
                raise KeyVaultError(
                    409,
                    "VaultAlreadyExists",
                    f"The vault name '{name}' is already in use. Vault names are globally unique so it is possible "
                    "that the name is already taken.",
                )
            if vault is None:
                self._by_name[name.lower()] = Vault(name, rid, settings, self.ctx.azure_base_url.rstrip("/"))
            else:
                vault.settings = settings

    def on_delete(self, resource_id: str) -> None:
        rid = resource_id.rstrip("/").lower()
        with self._lock:
            for key in [k for k, v in self._by_name.items() if v.resource_id.lower() == rid]:
                del self._by_name[key]

    # --- lookups -------------------------------------------------------------------------------

    def vault(self, name: str) -> Vault | None:
        with self._lock:
            return self._by_name.get(name.lower())

    def vault_uri(self, name: str) -> str:
        return f"{self.ctx.azure_base_url.rstrip('/')}{URL_PREFIX}/{name}/"

    def reset(self) -> None:
        with self._lock:
            self._by_name.clear()
