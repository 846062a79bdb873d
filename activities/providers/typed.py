"""Providers read their resource's configuration once, typed: `config_of(call, Model)` at the top
of an operation, then attributes. A configuration that does not fit its kind (a plan from another
version, a hand-made call) is a permanent error naming every JSON path, never a KeyError later.

Ownership (`shared.resources.ownership`) is decided here for every kind: `owner_of` is the owner
a configuration names, `require_own` refuses (permanently) an object of another twin before an
`ensure` writes to it, and `may_delete` tells a `delete` to leave such an object alone."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Generic

from activities.registry import Provider
from shared.engine.errors import PermanentError
from shared.engine.types import EnsureResult, Pending, ResourceCall
from shared.resources import ConfigError, ResourceConfig, parse_config
from shared.resources.base import C
from shared.resources.ownership import Claim, Owner, claim, foreign_message

log = logging.getLogger("activities.ownership")


def with_settings(current: Mapping[str, str], wanted: Mapping[str, str | None]) -> dict[str, str]:
    """A read-modify-write of settings (app settings, environment variables): `current` with
    `wanted` applied, a value setting it and None removing it; others' settings are kept."""
    merged = dict(current)
    for key, value in wanted.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


def config_of(call: ResourceCall, model: type[C]) -> C:
    """`call.resource.config` as `model`; a `PermanentError` with every problem's path otherwise."""
    try:
        return parse_config(call.resource.id, call.resource.config, model)
    except ConfigError as exc:
        raise PermanentError(str(exc)) from None


class ForeignObject(PermanentError):
    """The cloud object a resource would manage belongs to another twin (or control plane)."""


def owner_of(call: ResourceCall, config: ResourceConfig) -> Owner:
    """The owner `config` names; a configuration without one, or naming another twin than the
    call's, touches nothing (a hand-made call, a plan from before owners)."""
    owner = config.owner
    if owner is None:
        raise PermanentError(f"{call.resource.id}: its configuration names no owner (config.owner); "
                             "plan the twin again")
    if owner.twin != call.twin:
        raise PermanentError(f"{call.resource.id}: its configuration is owned by twin {owner.twin!r}, "
                             f"not by twin {call.twin!r}")
    return owner


class _Owned(ResourceConfig):
    """Only the owner of a configuration (read without its kind's model)."""


def call_owner(call: ResourceCall) -> Owner:
    """The owner the call's configuration names (checked against the call's twin), for helpers
    that have the call but not its parsed configuration."""
    raw = call.resource.config.get("owner")
    if not isinstance(raw, dict):
        raise PermanentError(f"{call.resource.id}: its configuration names no owner (config.owner); plan the twin again")
    return owner_of(call, _Owned(name=call.resource.id, owner=Owner.model_validate(raw)))


def require_own(call: ResourceCall, config: ResourceConfig, tags: Mapping[str, str] | None, what: str) -> Claim:
    """The claim of `call`'s twin on an object carrying `tags`; `ForeignObject` when it is
    another's (an `ensure` stops before writing anything to it)."""
    owner = owner_of(call, config)
    return refuse_foreign(call, what, owner, claim(owner, tags))


def refuse_foreign(call: ResourceCall, what: str, owner: Owner, found: Claim) -> Claim:
    """`found` (`owner`'s claim on the object `what` names), or `ForeignObject` when the object
    is another's: an `ensure` stops before writing anything to it."""
    if not found.allowed:
        raise ForeignObject(f"{call.resource.id}: {foreign_message(what, owner, found.holder)}")
    return found


def is_ours(call: ResourceCall, config: ResourceConfig, tags: Mapping[str, str] | None) -> bool:
    """Whether an object carrying `tags` is this twin's to read as its own (or unowned)."""
    return claim(owner_of(call, config), tags).allowed


def may_delete(call: ResourceCall, config: ResourceConfig, tags: Mapping[str, str] | None, what: str) -> bool:
    """Whether a `delete` may remove an object carrying `tags`: never another twin's (then the
    resource counts as absent: nothing of this twin is there)."""
    return deletable(call, what, claim(owner_of(call, config), tags))


def deletable(call: ResourceCall, what: str, found: Claim) -> bool:
    """Whether a `delete` may remove the object `what` names, on the call's twin's claim `found`:
    never another's (logged, and left alone)."""
    if not found.allowed:
        log.warning("%s: %s belongs to %s: left alone", call.resource.id, what, found.holder)
    return found.allowed


CREATE_STAGE = "create"


def to_create(description: str, **token: object) -> EnsureResult:
    """What an `ensure` that found nothing to reconcile answers, before it makes anything: the
    decision `created`, polled at once (the poll makes the object). The decision is then in the
    orchestration's history: a host killed while the object is being made resumes the poll, and
    the resource is reported `created`, not `updated` by a retry that found it."""
    return EnsureResult("created", pending=Pending({"stage": CREATE_STAGE, "action": "created", **token}, 0.0,
                                                   description))


def creating(call: ResourceCall) -> bool:
    """Whether this poll is the one that makes the object `to_create` decided on."""
    return call.pending is not None and call.pending.token.get("stage") == CREATE_STAGE


class TypedProvider(Provider, Generic[C]):
    """A provider whose kind's configuration is `model`."""

    model: type[C]

    def config(self, call: ResourceCall) -> C:
        return config_of(call, self.model)
