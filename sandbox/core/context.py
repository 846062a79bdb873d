"""State shared by the sandbox's services, so that one service's action shows in another's.

ARM creates a Digital Twins instance and the data plane must serve it; ARM grants a role and
the data plane must honour it after the profile's propagation delay; the control endpoint
registers a local Function host and Event Grid must deliver to it. Services never import each
other: they meet here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sandbox.core.exchanges import ExchangeLog
from sandbox.core.profiles import Faults
from sandbox.core.requestlog import RequestLog


class ResourceHooks(Protocol):
    """Side effects of an ARM resource type outside the generic resource store."""

    def on_put(self, resource_id: str, resource: dict) -> None:
        """Called after a create or update was accepted; may add read-only fields to `resource`
        (e.g. `properties.hostName`)."""

    def on_delete(self, resource_id: str) -> None:
        """Called when the resource (or its parent) is deleted."""


@dataclass(frozen=True)
class RoleAssignment:
    assignment_id: str  # the ARM resource id of the assignment
    principal_id: str
    role_definition_id: str  # the GUID at the end of the definition id, lower case
    scope: str  # lower case, no trailing slash
    effective_at: float  # time.time() from which the data plane honours it


class RoleAssignments:
    """Role assignments made through ARM, as the data planes see them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, RoleAssignment] = {}

    def grant(self, assignment: RoleAssignment) -> None:
        with self._lock:
            self._by_id[assignment.assignment_id.lower()] = assignment

    def revoke(self, assignment_id: str) -> None:
        with self._lock:
            self._by_id.pop(assignment_id.lower(), None)

    def revoke_under(self, scope: str) -> None:
        """Drop every assignment at or below `scope` (the scope's resource was deleted)."""
        prefix = scope.lower().rstrip("/")
        with self._lock:
            for key in [k for k, a in self._by_id.items() if a.scope == prefix or a.scope.startswith(prefix + "/")]:
                del self._by_id[key]

    def allows(self, principal_id: str, scope: str, role_definition_ids: set[str], now: float | None = None) -> bool:
        """True if `principal_id` holds one of the roles at `scope` or an ancestor scope, effective now."""
        now = time.time() if now is None else now
        target = scope.lower().rstrip("/")
        wanted = {r.lower() for r in role_definition_ids}
        with self._lock:
            for a in self._by_id.values():
                if a.principal_id != principal_id or a.role_definition_id not in wanted or a.effective_at > now:
                    continue
                if target == a.scope or target.startswith(a.scope + "/"):
                    return True
        return False


@dataclass(frozen=True)
class FunctionHostRef:
    """A local host serving a Function App's deployed code (registered through the control endpoint)."""

    base_url: str  # e.g. http://127.0.0.1:7071
    master_key: str | None = None


@dataclass
class SandboxContext:
    state_dir: Path
    request_log: RequestLog = field(default_factory=RequestLog)
    # Bodies of ARM and Digital Twins calls, kept only when enabled (conformance tests).
    exchanges: ExchangeLog = field(default_factory=ExchangeLog)
    faults: Faults = field(default_factory=Faults)
    role_assignments: RoleAssignments = field(default_factory=RoleAssignments)
    # Site resource id (lower case) -> the local host running that app.
    function_hosts: dict[str, FunctionHostRef] = field(default_factory=dict)
    # Base URL of the Azure HTTPS server once it listens, e.g. https://127.0.0.1:PORT
    azure_base_url: str = ""
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    tenant_id: str = "11111111-1111-1111-1111-111111111111"
    _hooks: dict[str, ResourceHooks] = field(default_factory=dict)
    # Called with (event type, resource id, operation name) after an ARM write or delete succeeds:
    # what Azure raises as `Microsoft.Resources.Resource*Success` (Event Grid listens).
    resource_event_listeners: list[Callable[[str, str, str], object]] = field(default_factory=list)

    def emit_resource_event(self, event_type: str, resource_id: str, operation: str) -> None:
        for listener in list(self.resource_event_listeners):
            listener(event_type, resource_id, operation)

    def register_hooks(self, resource_type: str, hooks: ResourceHooks) -> None:
        """`resource_type` like `Microsoft.DigitalTwins/digitalTwinsInstances` (case-insensitive);
        nested types are written with their parents: `Microsoft.EventGrid/topics/eventSubscriptions`."""
        self._hooks[resource_type.lower()] = hooks

    def hooks_for(self, resource_type: str) -> ResourceHooks | None:
        return self._hooks.get(resource_type.lower())
