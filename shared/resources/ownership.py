"""Who owns a cloud object, and whether a twin may touch one it finds (DESIGN principle 8).

Every object the control plane creates carries its owner: the twin and the control plane, as
tags (`DigitalTwin`, `ManagedBy`) where the cloud has them, or as a record the control plane
keeps where it has none (see each provider). Names never decide: clouds lowercase them, and
`{twin}-{device}` of one twin can equal that of another. What a twin may do with an object it
finds under a name it wants (`claim`):

- its own (the twin's tag is this twin, and the control plane's, if any, is this one): reconcile;
- unowned (neither tag): adopt, writing its owner tags;
- another's: never adopt, never delete; an `ensure` fails permanently naming the owner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONTROL_PLANE = "twin-control-plane"
"""The control plane's name on what it manages (`ManagedBy`)."""
INSTALLER = "twin-control-plane-install"
"""`ManagedBy` on the control plane's own resources (`install`): a twin named like the control
plane is then another owner, never the same one."""
TWIN_TAG = "DigitalTwin"
"""Tag (or label) naming the twin that owns an object."""
CONTROL_PLANE_TAG = "ManagedBy"
"""Tag naming the control plane that manages an object."""
OWNER_TAGS = (TWIN_TAG, CONTROL_PLANE_TAG)


class Owner(BaseModel):
    """The owner of a resource's cloud objects: the twin and the control plane managing it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    twin: str = Field(min_length=1)
    control_plane: str = Field(CONTROL_PLANE, min_length=1)

    def tags(self) -> dict[str, str]:
        """The owner tags every taggable object of the resource carries."""
        return {TWIN_TAG: self.twin, CONTROL_PLANE_TAG: self.control_plane}

    def missing(self, tags: Mapping[str, str] | None) -> dict[str, str]:
        """The owner tags `tags` lacks or holds with another value (to add when adopting)."""
        have = _folded(tags)
        return {k: v for k, v in self.tags().items() if have.get(k.lower()) != v}

    def describe(self) -> str:
        return f"twin {self.twin!r} of control plane {self.control_plane!r}"


_planning: ContextVar[Owner | None] = ContextVar("planning_owner", default=None)


@contextmanager
def planning_for(owner: Owner) -> Iterator[Owner]:
    """While a twin is planned: every configuration built without an owner gets this one (the
    planner builds thousands; none is copied to be given its owner)."""
    token = _planning.set(owner)
    try:
        yield owner
    finally:
        _planning.reset(token)


def planned_owner() -> Owner | None:
    """The owner of the twin being planned now (None outside planning)."""
    return _planning.get()


Verdict = Literal["own", "unowned", "foreign"]


@dataclass(frozen=True)
class Claim:
    """What a twin finds on an object: `verdict`, and the other owner when it is `foreign`."""

    verdict: Verdict
    holder: str = ""

    @property
    def allowed(self) -> bool:
        """The twin may reconcile (and delete) the object."""
        return self.verdict != "foreign"


def _folded(tags: Mapping[str, str] | None) -> dict[str, str]:
    # Azure tag names are case-insensitive (ARM may return another case than was written).
    return {str(k).lower(): str(v) for k, v in (tags or {}).items()}


def claim(owner: Owner, tags: Mapping[str, str] | None) -> Claim:
    """How `owner` stands to an object carrying `tags` (the values compare exactly: twin names
    differing only in case are different twins)."""
    have = _folded(tags)
    twin, manager = have.get(TWIN_TAG.lower()), have.get(CONTROL_PLANE_TAG.lower())
    if twin is None and manager is None:
        return Claim("unowned")
    if twin is not None and twin != owner.twin:
        return Claim("foreign", f"twin {twin!r}" + (f" of control plane {manager!r}" if manager else ""))
    if manager is not None and manager != owner.control_plane:
        return Claim("foreign", f"control plane {manager!r}" + (f" (twin {twin!r})" if twin else ""))
    return Claim("own" if twin is not None else "unowned")


def foreign_message(what: str, owner: Owner, holder: str) -> str:
    """The permanent error of an `ensure` that found another's object under its name."""
    return (f"{what} belongs to {holder}, not to {owner.describe()}: a twin never adopts another's object "
            "(names collide across twins, e.g. when a cloud lowercases them); rename the twin or the device")
