"""ARM resource ids and request paths, parsed case-insensitively as ARM does.

`/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}...]`
names a resource; an extension resource adds `/providers/{ns}/{type}/{name}` after any scope
(role assignments, event subscriptions on a topic). An odd number of type/name segments names a
collection (a list), and for POST the last segment is an action (`listKeys`).
"""

from __future__ import annotations

from dataclasses import dataclass


class PathError(ValueError):
    """The path is not an ARM resource path this sandbox understands."""


@dataclass(frozen=True)
class ResourceId:
    id: str  # as first given: original casing, no trailing slash, no query
    subscription: str
    resource_group: str | None
    namespace: str  # e.g. Microsoft.Web (Microsoft.Resources for groups and subscriptions)
    type: str  # full type, e.g. Microsoft.Web/sites/config
    name: str
    parent: str | None  # parent resource id, or the scope of an extension resource

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def type_key(self) -> str:
        return self.type.lower()

    @property
    def is_resource_group(self) -> bool:
        return self.type_key == "microsoft.resources/resourcegroups"

    @property
    def is_subscription(self) -> bool:
        return self.type_key == "microsoft.resources/subscriptions"

    @property
    def is_top_level(self) -> bool:
        """A tracked resource directly in a resource group (needs a location)."""
        return (
            self.resource_group is not None
            and self.parent is not None
            and self.parent.lower()
            == (f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}".lower())
            and self.type.count("/") == 1
        )


@dataclass(frozen=True)
class CollectionPath:
    """A list: every resource of `type` directly under `scope` (or, for `/resources`, every type)."""

    scope: str
    subscription: str
    resource_group: str | None
    type: str  # "" for `.../resources` (all types)


def _split(path: str) -> list[str]:
    path = path.split("?", 1)[0]
    return [s for s in path.split("/") if s]


def parse(path: str) -> ResourceId | CollectionPath:
    """Parse an ARM path into a resource id or a collection."""
    segs = _split(path)
    if len(segs) < 2 or segs[0].lower() != "subscriptions":
        raise PathError(f"not an ARM subscription path: {path}")
    sub = segs[1]
    sub_id = f"/subscriptions/{sub}"
    if len(segs) == 2:
        return ResourceId(
            sub_id, sub, None, "Microsoft.Resources", "Microsoft.Resources/subscriptions", sub, None
        )
    i = 2
    rg: str | None = None
    scope = sub_id
    if segs[i].lower() == "resourcegroups":
        if len(segs) == 3:
            return CollectionPath(sub_id, sub, None, "Microsoft.Resources/resourceGroups")
        rg = segs[3]
        scope = f"{sub_id}/resourceGroups/{rg}"
        if len(segs) == 4:
            return ResourceId(
                scope, sub, rg, "Microsoft.Resources", "Microsoft.Resources/resourceGroups", rg, sub_id
            )
        i = 4
    if i == len(segs) - 1 and segs[i].lower() == "resources":
        return CollectionPath(scope, sub, rg, "")
    result: ResourceId | CollectionPath | None = None
    while i < len(segs):
        if segs[i].lower() != "providers":
            raise PathError(f"expected 'providers/<namespace>/<type>' at segment {i + 1} of {path}")
        if i + 1 >= len(segs):
            raise PathError(f"missing resource provider namespace in {path}")
        ns = segs[i + 1]
        j = i + 2
        if j >= len(segs):
            raise PathError(f"missing resource type after {ns} in {path}")
        types: list[str] = []
        parent = scope
        current = f"{scope}/providers/{ns}"
        result = None
        while j < len(segs):
            if types and segs[j].lower() == "providers" and j + 1 < len(segs):
                break  # an extension resource on the resource named so far
            types.append(segs[j])
            full_type = ns + "/" + "/".join(types)
            if j + 1 >= len(segs):
                result = CollectionPath(current if len(types) > 1 else scope, sub, rg, full_type)
                j += 1
                break
            name = segs[j + 1]
            item_parent = parent
            current = f"{current}/{segs[j]}/{name}"
            result = ResourceId(current, sub, rg, ns, full_type, name, item_parent)
            parent = current
            j += 2
        if isinstance(result, CollectionPath):
            if j < len(segs):
                raise PathError(f"unexpected segments after a collection in {path}")
            return result
        if result is None:
            raise PathError(f"no resource in {path}")
        scope = result.id
        i = j
    if result is None:
        raise PathError(f"no resource in {path}")
    return result


def parent_chain(rid: ResourceId) -> list[str]:
    """Ids from the resource's parent up to (excluding) the subscription."""
    out: list[str] = []
    current = rid
    while current.parent is not None:
        parsed = parse(current.parent)
        if not isinstance(parsed, ResourceId) or parsed.is_subscription:
            break
        out.append(parsed.id)
        current = parsed
    return out


def is_under(child_key: str, parent_key: str) -> bool:
    """True if `child_key` is `parent_key` itself or lies below it (both lower case)."""
    return child_key == parent_key or child_key.startswith(parent_key.rstrip("/") + "/")
