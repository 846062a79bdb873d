"""L3 hot (kind `firestore`): a Firestore database (Native mode) in the plan's location, the two
composite indexes the readers' queries need on the readings' collection, and `roles/datastore.user`
for the functions' service account (Firestore's IAM is per project).

The queries filter `device_id ==` and range over / order by `timestamp`, ascending (range reads,
the movers) and descending (the latest entry): without both composite indexes Firestore refuses
them ("The query requires an index"). Creating the database and each index are long operations:
`ensure` starts one and returns pending; each poll re-reads and goes on. Destroy deletes the
database (its documents with it) and takes the role back. A Firestore database carries no labels.
"""

from __future__ import annotations

import contextlib
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    change_policy,
    firestore_admin,
    get_or_none,
    ignore_missing,
    members_of,
    merge_action,
    pending,
    project_of,
    project_policy,
)
from activities.registry import register
from shared.contracts import Output, StorageKey
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import FirestoreConfig

DATASTORE_USER = "roles/datastore.user"
# (field, order) prefixes of the composite indexes the hot store's queries use.
INDEXES: tuple[tuple[tuple[str, str], ...], ...] = (
    ((str(StorageKey.PARTITION), "ASCENDING"), (str(StorageKey.SORT), "ASCENDING")),
    ((str(StorageKey.PARTITION), "ASCENDING"), (str(StorageKey.SORT), "DESCENDING")),
)


def database_name(config: FirestoreConfig) -> str:
    return f"projects/{project_of(config)}/databases/{config.name}"


def _shape(index: Any) -> tuple[tuple[str, str], ...]:
    """An index's fields without the implicit `__name__` Firestore appends."""
    return tuple((f.field_path, f.order.name) for f in index.fields if f.field_path != "__name__")


def _member(config: FirestoreConfig) -> str:
    return f"serviceAccount:{account_email(config.service_account, project_of(config))}"


@register("gcp", "firestore")
class Firestore(GcpResource[FirestoreConfig]):
    model = FirestoreConfig
    label = "Firestore database"

    def describe(self, call: ResourceCall, config: FirestoreConfig) -> Any:
        return get_or_none(lambda: firestore_admin().get_database(request={"name": database_name(config)}))

    def converge(self, call: ResourceCall, config: FirestoreConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict
        from google.cloud.firestore_admin_v1.types import database as database_types

        admin = firestore_admin()
        name = database_name(config)
        db = self.describe(call, config)
        if db is None:
            with contextlib.suppress(Conflict):  # created by a concurrent run
                admin.create_database(request={
                    "parent": f"projects/{project_of(config)}", "database_id": config.name,
                    "database": database_types.Database(location_id=config.location,
                                                        type_=database_types.Database.DatabaseType.FIRESTORE_NATIVE)})
            return pending(merge_action(action, "created"), f"Firestore database {config.name} is being created")
        if db.type_ != database_types.Database.DatabaseType.FIRESTORE_NATIVE:
            raise PermanentError(f"Firestore database {config.name} exists in {db.type_.name} mode; the hot store "
                                 "needs Native mode (delete it or rename the twin)")
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
        return EnsureResult(action=action, outputs=self.outputs(call, config, db))

    def outputs(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> dict[str, str]:
        values = {str(Output.FIRESTORE_DATABASE): config.name, str(Output.FIRESTORE_COLLECTION): config.collection}
        return {o: values[o] for o in call.resource.produces if o in values}

    def details(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> dict[str, Any]:
        get, _ = project_policy(project_of(config))
        return {"database": current.name, "location": current.location_id, "type": current.type_.name,
                "datastore_user": _member(config) in members_of(get(), DATASTORE_USER)}

    def remove(self, call: ResourceCall, config: FirestoreConfig, current: Any) -> bool:
        ignore_missing(lambda: firestore_admin().delete_database(request={"name": database_name(config)}))
        return False  # gone once a read says so

    def leftovers(self, call: ResourceCall, config: FirestoreConfig) -> bool:
        get, set_ = project_policy(project_of(config))
        return change_policy(get, set_, DATASTORE_USER, remove={_member(config)})
