"""IAM state: service accounts (IAM v1) with their keys, and the IAM policies set on projects,
functions, Cloud Run services and Pub/Sub topics. Policies carry an etag; a set with a stale etag is
refused (ABORTED, HTTP 409) as IAM does. A binding takes effect after the profile's propagation
delay, so `allows` may say no for a moment after a grant, as on Google Cloud.

A user-managed key is a real RSA key pair: its private half is returned once, in the key file
(`privateKeyData`, the JSON `google.oauth2.service_account` reads), and the sandbox keeps the public
half, so a token the key signs (the self-signed JWT Google's clients send) is verified and
attributed to its account (`verified_account`); a deleted key's tokens no longer are."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.profiles import Faults
from sandbox.gcp.common import DEFAULT_COMPUTE_SA, PROJECT_ID, GoogleError

ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# Roles that include run.routes.invoke (a Cloud Run service's, hence a gen2 function's, HTTP door).
INVOKER_ROLES = frozenset({"roles/run.invoker", "roles/run.admin", "roles/editor", "roles/owner"})


@dataclass
class ServiceAccount:
    project: str
    account_id: str
    display_name: str = ""
    description: str = ""
    unique_id: str = ""

    @property
    def email(self) -> str:
        return f"{self.account_id}@{self.project}.iam.gserviceaccount.com"

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": f"projects/{self.project}/serviceAccounts/{self.email}",
            "projectId": self.project,
            "uniqueId": self.unique_id,
            "email": self.email,
            "etag": base64.b64encode(b"\x00" + self.unique_id.encode()[:6]).decode(),
            "oauth2ClientId": self.unique_id,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.description:
            out["description"] = self.description
        return out


MAX_KEYS_PER_ACCOUNT = 10


@dataclass
class ServiceAccountKey:
    name: str  # projects/{p}/serviceAccounts/{email}/keys/{key id}
    public_pem: bytes
    created: str

    @property
    def key_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def to_json(self, private_key_data: bytes | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "keyAlgorithm": "KEY_ALG_RSA_2048", "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": "USER_MANAGED", "validAfterTime": self.created, "validBeforeTime": "9999-12-31T23:59:59Z",
        }
        if private_key_data is not None:
            out["privateKeyType"] = "TYPE_GOOGLE_CREDENTIALS_FILE"
            out["privateKeyData"] = base64.b64encode(private_key_data).decode()
        return out


@dataclass
class Policy:
    version: int = 1
    serial: int = 0  # bumped by every set; the etag encodes it
    bindings: list[dict[str, Any]] = field(default_factory=list)
    # (role, member) -> when it was first granted (time.time()), for the propagation delay
    granted_at: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return base64.b64encode(b"BwY" + self.serial.to_bytes(5, "big")).decode()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "etag": self.etag}
        if self.bindings:
            out["bindings"] = self.bindings
        return out


class IamBackend:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._accounts: dict[str, ServiceAccount] = {}  # email -> account
        self._keys: dict[str, list[ServiceAccountKey]] = {}  # email -> its user-managed keys
        self._policies: dict[str, Policy] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._accounts.clear()
            self._keys.clear()
            self._policies.clear()
            # A new project: its owner (the deployer) and the default compute account as editor.
            self._policies[f"projects/{PROJECT_ID}"] = Policy(
                bindings=[{"role": "roles/editor", "members": [f"serviceAccount:{DEFAULT_COMPUTE_SA}"]},
                          {"role": "roles/owner", "members": ["user:deployer@sandbox.example"]}],
                granted_at={("roles/editor", f"serviceAccount:{DEFAULT_COMPUTE_SA}"): 0.0,
                            ("roles/owner", "user:deployer@sandbox.example"): 0.0},
            )

    # --- service accounts -------------------------------------------------------------------------

    def create_account(self, project: str, account_id: str, body: dict[str, Any]) -> ServiceAccount:
        if project != PROJECT_ID:
            raise GoogleError("NOT_FOUND", f"Project {project} not found or permission denied.")
        if not (6 <= len(account_id) <= 30) or not ACCOUNT_ID.fullmatch(account_id):
            raise GoogleError("INVALID_ARGUMENT", f"accountId: {account_id!r} must be 6-30 characters: lower case "
                              "letters, digits and hyphens, starting with a letter and not ending with a hyphen.")
        sa = ServiceAccount(project, account_id, str(body.get("displayName") or ""), str(body.get("description") or ""))
        sa.unique_id = str(int(hashlib.sha256(sa.email.encode()).hexdigest()[:18], 16)).rjust(21, "1")[:21]
        with self._lock:
            if sa.email in self._accounts:
                raise GoogleError("ALREADY_EXISTS", f"Service account {account_id} already exists within project "
                                  f"projects/{project}.")
            self._accounts[sa.email] = sa
        return sa

    def _find(self, name: str) -> ServiceAccount | None:
        # projects/{project|-}/serviceAccounts/{email|uniqueId}
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "serviceAccounts":
            raise GoogleError("INVALID_ARGUMENT", f"name: {name!r} is not projects/*/serviceAccounts/*")
        key = parts[3]
        sa = self._accounts.get(key) or next((a for a in self._accounts.values() if a.unique_id == key), None)
        if sa is not None and parts[1] not in ("-", sa.project):
            return None
        return sa

    def get_account(self, name: str) -> ServiceAccount:
        with self._lock:
            sa = self._find(name)
        if sa is None:
            raise GoogleError("NOT_FOUND", f"Unknown service account {name.rsplit('/', 1)[-1]}")
        return sa

    def patch_account(self, name: str, details: dict[str, Any], paths: list[str]) -> ServiceAccount:
        """PatchServiceAccount: only `display_name` and `description` may change (as IAM allows)."""
        allowed = {"display_name": "displayName", "description": "description"}
        unknown = [p for p in paths if p not in allowed]
        if not paths or unknown:
            raise GoogleError("INVALID_ARGUMENT", f"update_mask: {unknown or 'empty'}: only display_name and "
                              "description can be updated.")
        with self._lock:
            sa = self._find(name)
            if sa is None:
                raise GoogleError("NOT_FOUND", f"Unknown service account {name.rsplit('/', 1)[-1]}")
            if "display_name" in paths:
                sa.display_name = str(details.get("displayName") or "")
            if "description" in paths:
                sa.description = str(details.get("description") or "")
            return sa

    def delete_account(self, name: str) -> None:
        with self._lock:
            sa = self._find(name)
            if sa is None:
                raise GoogleError("NOT_FOUND", f"Unknown service account {name.rsplit('/', 1)[-1]}")
            del self._accounts[sa.email]
            self._keys.pop(sa.email, None)

    def list_accounts(self, project: str) -> list[ServiceAccount]:
        with self._lock:
            return sorted((a for a in self._accounts.values() if project in ("-", a.project)), key=lambda a: a.email)

    def account_exists(self, email: str) -> bool:
        with self._lock:
            return email in self._accounts or email == DEFAULT_COMPUTE_SA

    # --- keys ---------------------------------------------------------------------------------------

    def create_key(self, account: str) -> tuple[ServiceAccountKey, bytes]:
        """A new key of `account` (projects/*/serviceAccounts/*) and its key file (the only copy)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        sa = self.get_account(account)
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        key_id = secrets.token_hex(20)
        from sandbox.gcp.common import now_rfc3339

        key = ServiceAccountKey(f"projects/{sa.project}/serviceAccounts/{sa.email}/keys/{key_id}", public,
                                now_rfc3339())
        key_file = {
            "type": "service_account", "project_id": sa.project, "private_key_id": key_id,
            "private_key": pem.decode(), "client_email": sa.email, "client_id": sa.unique_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{sa.email}",
        }
        with self._lock:
            keys = self._keys.setdefault(sa.email, [])
            if len(keys) >= MAX_KEYS_PER_ACCOUNT:
                raise GoogleError("FAILED_PRECONDITION", f"Precondition check failed: service account {sa.email} "
                                  f"already has {MAX_KEYS_PER_ACCOUNT} keys.")
            keys.append(key)
        return key, json.dumps(key_file, indent=2).encode()

    def list_keys(self, account: str) -> list[ServiceAccountKey]:
        sa = self.get_account(account)
        with self._lock:
            return list(self._keys.get(sa.email, []))

    def _key(self, name: str) -> tuple[ServiceAccount, ServiceAccountKey]:
        account, _, key_id = name.partition("/keys/")
        sa = self.get_account(account)
        with self._lock:
            key = next((k for k in self._keys.get(sa.email, []) if k.key_id == key_id), None)
        if key is None:
            raise GoogleError("NOT_FOUND", f"Service account key {key_id} does not exist.")
        return sa, key

    def get_key(self, name: str) -> ServiceAccountKey:
        return self._key(name)[1]

    def delete_key(self, name: str) -> None:
        sa, key = self._key(name)
        with self._lock:
            keys = self._keys.get(sa.email, [])
            if key in keys:
                keys.remove(key)

    def verified_account(self, token: str) -> str | None:
        """The account whose live key signed JWT `token` (RS256, `kid` = key id), else None."""
        from google.auth import exceptions, jwt

        try:
            header = jwt.decode_header(token)
        except (ValueError, exceptions.GoogleAuthError):
            return None
        kid = header.get("kid") if isinstance(header, dict) else None
        with self._lock:
            found = next(((email, k) for email, keys in self._keys.items() for k in keys if k.key_id == kid), None)
        if found is None:
            return None
        email, key = found
        try:
            claims = jwt.decode(token, certs={key.key_id: key.public_pem.decode()}, verify=True)
        except (ValueError, exceptions.GoogleAuthError):
            return None
        return email if claims.get("iss") == email else None

    # --- policies -----------------------------------------------------------------------------------

    def get_policy(self, resource: str) -> dict[str, Any]:
        with self._lock:
            return self._policies.setdefault(resource, Policy()).to_json()

    def set_policy(self, resource: str, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the policy of `resource` (canonical JSON of google.iam.v1.Policy)."""
        bindings = []
        for i, b in enumerate(policy.get("bindings") or []):
            role, members = b.get("role"), b.get("members") or []
            if not isinstance(role, str) or not role.startswith(("roles/", "projects/", "organizations/")):
                raise GoogleError("INVALID_ARGUMENT", f"policy.bindings[{i}].role: {role!r} is not a role name")
            for member in members:
                if member not in ("allUsers", "allAuthenticatedUsers") and ":" not in member:
                    raise GoogleError("INVALID_ARGUMENT", f"policy.bindings[{i}].members: invalid member {member!r}")
            if members:
                bindings.append({"role": role, "members": sorted(set(members))})
        now = time.time()
        with self._lock:
            current = self._policies.setdefault(resource, Policy())
            etag = policy.get("etag")
            if etag and etag != current.etag:
                raise GoogleError("ABORTED", "There were concurrent policy changes. Please retry the whole "
                                  "read-modify-write with exponential backoff.")
            pairs: set[tuple[str, str]] = {(str(b["role"]), str(m)) for b in bindings for m in b["members"]}
            granted = {p: current.granted_at.get(p, now) for p in pairs}
            self._policies[resource] = Policy(int(policy.get("version") or 1), current.serial + 1, bindings, granted)
            return self._policies[resource].to_json()

    def drop_policy(self, resource: str) -> None:
        with self._lock:
            self._policies.pop(resource, None)

    def allows(self, resources: list[str], members: list[str], roles: frozenset[str]) -> bool:
        """Whether any of `members` holds one of `roles` on one of `resources`, effective now."""
        horizon = time.time() - self.faults.profile.rbac_propagation_seconds
        with self._lock:
            for resource in resources:
                policy = self._policies.get(resource)
                if policy is None:
                    continue
                for (role, member), at in policy.granted_at.items():
                    if role in roles and member in members and at <= horizon:
                        return True
        return False

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"type": "iam.serviceAccount", "name": f"projects/{a.project}/serviceAccounts/{a.email}"}
                    for a in self._accounts.values()]
