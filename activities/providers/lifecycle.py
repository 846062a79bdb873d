"""The lifecycle of a resource kind read with one describe call: every AWS and Google Cloud kind.

`DescribedResource` holds it once; a cloud's base (`AwsResource`, `GcpResource`) says how an
object names its owner (`owner_claim`) and how often its long operations are polled
(`poll_seconds`); a kind fills in the specifics (`describe`, `converge`, `remove`, ...).

- `ensure` finds the object (`found`: `describe`, refused when it is another twin's); nothing
  there: the decision `created`, polled at once (`to_create`), so a host killed while the object
  is being made still reports it created;
- `ensure` and `poll` both converge (`converge`): read, then write only what differs; a step the
  cloud finishes later returns `self.pending(...)` and the next poll converges again;
- `read` reports what exists, with outputs once it is `ready`; another's object reads as absent;
- `delete` leaves another's object alone, starts the delete (`remove`), polls while the cloud is
  still deleting, removes what outlives the object itself (`leftovers`, e.g. its role), and is done
  only when nothing of the resource is left (`remaining`: the object and `remaining_parts`).
"""

from __future__ import annotations

import threading
from typing import Any

from activities.providers.typed import TypedProvider, deletable, owner_of, refuse_foreign, to_create
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, Pending, ReadResult, ResourceCall
from shared.resources.base import C
from shared.resources.ownership import Claim

ACTIONS: frozenset[str] = frozenset({"created", "updated", "unchanged", "deleted", "absent"})


def pending(action: Action, description: str, poll_after_seconds: float, **token: Any) -> EnsureResult:
    """Still running in the cloud: the orchestrator polls again (the token carries the action so far)."""
    return EnsureResult(
        action=action,
        pending=Pending(token={"action": action, **token}, poll_after_seconds=poll_after_seconds,
                        description=description),
    )


def action_from(call: ResourceCall, default: Action = "unchanged") -> Action:
    """The action recorded in a pending token (the first ensure's verdict), else `default`."""
    if call.pending is not None:
        recorded = call.pending.token.get("action")
        if recorded in ACTIONS:
            return recorded  # type: ignore[no-any-return]
    return default


def merge_action(first: Action, later: Action) -> Action:
    """`created` wins over `deleted`, which wins over `updated`, which wins over `unchanged`."""
    for candidate in ("created", "deleted", "updated"):
        if candidate in (first, later):
            return candidate  # type: ignore[return-value]
    return first


def settings_written(call: ResourceCall) -> bool:
    """Whether an earlier call of this `apply_settings` wrote the settings (its `settings_pending`)."""
    return call.pending is not None and bool(call.pending.token.get("wrote"))


# `ensure` hands the object it found (and checked) to `converge`'s first `found`, in the same thread.
_found = threading.local()


class DescribedResource(TypedProvider[C]):
    """The lifecycle above; each operation parses the configuration once and hands it on."""

    #: what a person reads in progress and in errors
    label = "resource"

    # --- what a cloud's base says --------------------------------------------------------------

    def owner_claim(self, call: ResourceCall, config: C, current: Any) -> Claim:
        """The call's twin's claim on `current`, from the owner marks the object carries."""
        raise PermanentError(f"{type(self).__name__} does not define owner_claim")

    def poll_seconds(self) -> float:
        raise PermanentError(f"{type(self).__name__} does not define poll_seconds")

    # --- what a kind says ----------------------------------------------------------------------

    def describe(self, call: ResourceCall, config: C) -> Any:
        """The object as the cloud describes it now, or None when it does not exist."""
        raise PermanentError(f"{type(self).__name__} does not define describe")

    def converge(self, call: ResourceCall, config: C, action: Action) -> EnsureResult:
        """Create or reconcile; `action` is what earlier polls of this ensure did."""
        raise PermanentError(f"{type(self).__name__} does not define converge")

    def remove(self, call: ResourceCall, config: C, current: Any) -> bool:
        """Start deleting `current`; True when it is gone now, False when the cloud is still deleting."""
        raise PermanentError(f"{type(self).__name__} does not define remove")

    def leftovers(self, call: ResourceCall, config: C) -> bool:
        """Delete what outlives the object (its role, a grant); True if anything was there."""
        return False

    def remaining_parts(self, call: ResourceCall, config: C) -> list[str]:
        """What a kind leaves besides the object (a role, a grant) that its delete must have removed."""
        return []

    def outputs(self, call: ResourceCall, config: C, current: Any) -> dict[str, str]:
        return {}

    def details(self, call: ResourceCall, config: C, current: Any) -> dict[str, Any]:
        return {}

    def ready(self, current: Any) -> bool:
        """Done provisioning (`read` reports outputs only then)."""
        return True

    # --- ownership -----------------------------------------------------------------------------

    def found(self, call: ResourceCall, config: C) -> Any:
        """`describe`, refused (`ForeignObject`, before anything is written) when it is another's."""
        handed = getattr(_found, "value", None)
        _found.value = None
        if handed is not None and handed[0] is call:
            return handed[1]  # just found (and checked) by `ensure`, in this thread, for this call
        current = self.describe(call, config)
        if current is not None:
            refuse_foreign(call, f"{self.label} {config.name}", owner_of(call, config),
                           self.owner_claim(call, config, current))
        return current

    def ours(self, call: ResourceCall, config: C, current: Any) -> bool:
        return self.owner_claim(call, config, current).allowed

    # --- the lifecycle -------------------------------------------------------------------------

    def pending(self, action: Action, description: str, **token: Any) -> EnsureResult:
        return pending(action, description, self.poll_seconds(), **token)

    def settings_pending(self, description: str, wrote: bool, **token: Any) -> Pending:
        """`apply_settings`' answer while the cloud rolls settings out: called again with it, the
        apply reads `settings_written` (whether an earlier call of this apply wrote them)."""
        return Pending(token={"wrote": wrote, **token}, poll_after_seconds=self.poll_seconds(), description=description)

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.found(call, config)
        if current is None:
            return to_create(f"{self.label} {config.name} is being created")
        _found.value = (call, current)
        try:
            return self.converge(call, config, "unchanged")
        finally:
            _found.value = None

    def poll(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        if call.pending is not None and call.pending.token.get("stage") == "delete":
            return self.poll_delete(call, config)
        return self.converge(call, config, action_from(call))

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        current = self.describe(call, config)
        if current is None:
            return ReadResult(exists=False)
        if not self.ours(call, config, current):
            return ReadResult(exists=False, details={"owner": "another twin"})
        outputs = self.outputs(call, config, current) if self.ready(current) else {}
        return ReadResult(exists=True, outputs=outputs, details=self.details(call, config, current))

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        current = self.describe(call, config)
        if current is None:
            return self.verified(call, config, "deleted" if self.leftovers(call, config) else "absent")
        if not deletable(call, f"{self.label} {config.name}", self.owner_claim(call, config, current)):
            return EnsureResult(action="absent")
        if not self.remove(call, config, current):
            return self.deleting(config)
        self.leftovers(call, config)
        return self.verified(call, config, "deleted")

    def poll_delete(self, call: ResourceCall, config: C) -> EnsureResult:
        current = self.describe(call, config)
        if current is not None and self.ours(call, config, current):
            return self.deleting(config)
        self.leftovers(call, config)
        return self.verified(call, config, "deleted")

    def deleting(self, config: C, what: str = "") -> EnsureResult:
        return self.pending("deleted", what or f"{self.label} {config.name} is being deleted", stage="delete")

    def remaining(self, call: ResourceCall, config: C) -> list[str]:
        """What of this resource (this twin's, by ownership) is still there after its delete."""
        current = self.describe(call, config)
        left = [f"{self.label} {config.name}"] if current is not None and self.ours(call, config, current) else []
        return left + self.remaining_parts(call, config)

    def verified(self, call: ResourceCall, config: C, action: Action) -> EnsureResult:
        """`action`, once nothing of the resource is left; else still deleting (polled, so a
        destroy never reports Completed over an object it left behind)."""
        left = self.remaining(call, config)
        if left:
            return self.deleting(config, f"still there after the delete: {', '.join(left)}")
        return EnsureResult(action=action)
