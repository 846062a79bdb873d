"""L3 hot (kind `firestore`): a Firestore database (Native mode) in the plan's location, the two
composite indexes the readers' queries need on the readings' collection, and `roles/datastore.user`
for the functions' service account (Firestore's IAM is per project).

The queries filter `device_id ==` and range over / order by `timestamp`, ascending (range reads,
the movers) and descending (the latest entry): without both composite indexes Firestore refuses
them ("The query requires an index"). Creating the database and each index are long operations:
`ensure` starts one and returns pending; each poll re-reads and goes on. Destroy deletes the
database (its documents with it) and takes the role back.

Ownership: each twin has its own database (`{twin}-hot`, never one shared by twins of a project:
a database's IAM, location and deletion are then the twin's alone). A Firestore database carries
no labels or description, so it holds its owner: the document `_twin_control_plane/owner`
(`twin`, `control_plane`, `resource`), written right after the database exists. A database
without it is unowned (adopted: the document is written); another owner's is refused, left alone
by a delete, and the project's `roles/datastore.user` grant of this twin's account is taken back
only when the database is gone or this twin's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    change_policy,
    firestore_admin,
    firestore_data,
    get_or_none,
    ignore_missing,
    members_of,
    pending,
    project_of,
    project_policy,
)
from activities.providers.lifecycle import merge_action
from activities.providers.typed import call_owner
from activities.registry import register
from shared.contracts import Output, StorageKey
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import FirestoreConfig
from shared.resources.ownership import CONTROL_PLANE_TAG, TWIN_TAG

DATASTORE_USER = "roles/datastore.user"
# (field, order) prefixes of the composite indexes the hot store's queries use.
INDEXES: tuple[tuple[tuple[str, str], ...], ...] = (
    ((str(StorageKey.PARTITION), "ASCENDING"), (str(StorageKey.SORT), "ASCENDING")),
    ((str(StorageKey.PARTITION), "ASCENDING"), (str(StorageKey.SORT), "DESCENDING")),
)


def database_name(config: FirestoreConfig) -> str:
    return f"projects/{project_of(config)}/databases/{config.name}"


OWNER_COLLECTION = "_twin_control_plane"
OWNER_DOCUMENT = "owner"


def owner_document(config: FirestoreConfig) -> str:
    return f"{database_name(config)}/documents/{OWNER_COLLECTION}/{OWNER_DOCUMENT}"


def read_owner(config: FirestoreConfig) -> dict[str, str]:
    """The owner marks the database's owner document holds (none: no document)."""
    from google.api_core.exceptions import NotFound

    try:
        for answer in firestore_data().batch_get_documents(request={
                "database": database_name(config), "documents": [owner_document(config)]}):
            if "found" in answer:
                fields = answer.found.fields
                return {tag: fields[key].string_value for tag, key in
                        ((TWIN_TAG, "twin"), (CONTROL_PLANE_TAG, "control_plane")) if key in fields}
    except NotFound:
        return {}  # the database went away meanwhile
    return {}


def write_owner(call: ResourceCall, config: FirestoreConfig) -> None:
    """Create the owner document (only if there is none: a concurrent writer's stays, and is read next)."""
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition

    owner = call_owner(call)
    fields = {"twin": owner.twin, "control_plane": owner.control_plane, "resource": call.resource.id}
    with contextlib.suppress(AlreadyExists, FailedPrecondition):
        firestore_data().commit(request={"database": database_name(config), "writes": [{
            "update": {"name": owner_document(config), "fields": {k: {"string_value": v} for k, v in fields.items()}},
            "current_document": {"exists": False}}]})


def _shape(index: Any) -> tuple[tuple[str, str], ...]:
    """An index's fields without the implicit `__name__` Firestore appends."""
    return tuple((f.field_path, f.order.name) for f in index.fields if f.field_path != "__name__")


def _member(config: FirestoreConfig) -> str:
    return f"serviceAccount:{account_email(config.service_account, project_of(config))}"


@dataclass(frozen=True)
class FoundDatabase:
    """A database as `describe` found it: Google's description and its owner document's marks."""

    database: Any
    owner: Mapping[str, str]


@register("gcp", "firestore")
class Firestore(GcpResource[FirestoreConfig]):
    model = FirestoreConfig
    label = "Firestore database"
    labelled = False

    def owner_marks(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> Mapping[str, str]:
        return dict(current.owner)

    def describe(self, call: ResourceCall, config: FirestoreConfig) -> Any:
        """The database with its owner document's marks, read once (the claim and `converge` share them)."""
        database = get_or_none(lambda: firestore_admin().get_database(request={"name": database_name(config)}))
        return None if database is None else FoundDatabase(database, read_owner(config))

    def converge(self, call: ResourceCall, config: FirestoreConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict
        from google.cloud.firestore_admin_v1.types import database as database_types

        admin = firestore_admin()
        name = database_name(config)
        found = self.found(call, config)
        if found is None:
            with contextlib.suppress(Conflict):  # created by a concurrent run
                admin.create_database(request={
                    "parent": f"projects/{project_of(config)}", "database_id": config.name,
                    "database": database_types.Database(location_id=config.location,
                                                        type_=database_types.Database.DatabaseType.FIRESTORE_NATIVE)})
            return pending(merge_action(action, "created"), f"Firestore database {config.name} is being created")
        db = found.database
        if db.type_ != database_types.Database.DatabaseType.FIRESTORE_NATIVE:
            raise PermanentError(f"Firestore database {config.name} exists in {db.type_.name} mode; the hot store "
                                 "needs Native mode (delete it or rename the twin)")
        if not found.owner:
            write_owner(call, config)  # new (or unowned): mark it ours, then read it back next poll
            return pending(merge_action(action, "updated"), f"Firestore database {config.name}: owner recorded")
        group = f"{name}/collectionGroups/{config.collection}"
        found = {_shape(i): i for i in admin.list_indexes(request={"parent": group})}
        for shape in INDEXES:
            index = found.get(shape)
            if index is None:
                with contextlib.suppress(Conflict):  # being created by a concurrent run
                    admin.create_index(request={"parent": group, "index": {
                        "query_scope": "COLLECTION",
                        "fields": [{"field_path": field, "order": order} for field, order in shape]}})
                return pending(merge_action(action, "updated"), f"Firestore index {shape} is being created")
            if index.state.name == "CREATING":
                return pending(action, f"Firestore index {shape} is being built")
            if index.state.name != "READY":
                raise PermanentError(f"Firestore index {shape} on {config.collection} is {index.state.name}: "
                                     "delete it and deploy again")
        get, set_ = project_policy(project_of(config))
        if change_policy(get, set_, DATASTORE_USER, add={_member(config)}):
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self.outputs(call, config, found))

    def outputs(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> dict[str, str]:
        values = {str(Output.FIRESTORE_DATABASE): config.name, str(Output.FIRESTORE_COLLECTION): config.collection}
        return {o: values[o] for o in call.resource.produces if o in values}

    def details(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> dict[str, Any]:
        get, _ = project_policy(project_of(config))
        db = current.database
        return {"database": db.name, "location": db.location_id, "type": db.type_.name,
                "datastore_user": _member(config) in members_of(get(), DATASTORE_USER)}

    def remove(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> bool:
        ignore_missing(lambda: firestore_admin().delete_database(request={"name": database_name(config)}))
        return False  # gone once a read says so

    def leftovers(self, call: ResourceCall, config: FirestoreConfig) -> bool:
        current = self.describe(call, config)
        if current is not None and not self.ours(call, config, current):
            return False  # the name is another owner's database now: the grant may be its account's
        get, set_ = project_policy(project_of(config))
        return change_policy(get, set_, DATASTORE_USER, remove={_member(config)})

    def remaining_parts(self, call: ResourceCall, config: FirestoreConfig) -> list[str]:
        if self.describe(call, config) is not None:
            return []
        get, _ = project_policy(project_of(config))
        return [f"{DATASTORE_USER} for {config.service_account}"] if _member(config) in members_of(get(), DATASTORE_USER) \
            else []
