"""IAM state: service accounts (IAM v1) and the IAM policies set on projects, functions and Cloud Run
services. Policies carry an etag; a set with a stale etag is refused (ABORTED, HTTP 409) as IAM does.
A binding takes effect after the profile's propagation delay, so `allows` may say no for a moment
after a grant, as on Google Cloud."""

from __future__ import annotations

import base64
import hashlib
import re
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
        self._policies: dict[str, Policy] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._accounts.clear()
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

    def delete_account(self, name: str) -> None:
        with self._lock:
            sa = self._find(name)
            if sa is None:
                raise GoogleError("NOT_FOUND", f"Unknown service account {name.rsplit('/', 1)[-1]}")
            del self._accounts[sa.email]

    def list_accounts(self, project: str) -> list[ServiceAccount]:
        with self._lock:
            return sorted((a for a in self._accounts.values() if project in ("-", a.project)), key=lambda a: a.email)

    def account_exists(self, email: str) -> bool:
        with self._lock:
            return email in self._accounts or email == DEFAULT_COMPUTE_SA

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
