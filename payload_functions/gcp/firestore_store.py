"""Hot storage in Firestore (Native mode; google-cloud-firestore imported when used).

One document per reading, never a per-device aggregate: Firestore sustains about one write per
second on one document. The document id is a hash of (`device_id`, `timestamp`), so writing the
same reading again overwrites it (idempotent), and ids are not monotonically increasing (which
Firestore's best practices rule out: writes would crowd one key range). The fields are the
normalised reading itself: `device_id` and the fixed-width ISO `timestamp` (text order is time
order), then the values.

Queries, and the index each needs (the GCP provider creates the composite ones):
- `query` / `latest`: `device_id ==` with a range on / order by `timestamp`: composite indexes
  (`device_id` ASC, `timestamp` ASC) and (`device_id` ASC, `timestamp` DESC);
- `expired`: a range on `timestamp` alone: the automatic single-field index.

The database is `FIRESTORE_DATABASE` (a named database), the collection `FIRESTORE_COLLECTION`;
the project comes from the environment (Application Default Credentials on Google Cloud,
`GOOGLE_CLOUD_PROJECT` with `FIRESTORE_EMULATOR_HOST` locally).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from shared.contracts import Setting, StorageKey

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def document_id(device_id: str, timestamp: str) -> str:
    """Deterministic and spread over the key space (never sequential)."""
    return hashlib.sha256(f"{device_id}\n{timestamp}".encode()).hexdigest()[:40]


def client(database: str) -> Any:
    """One client per database per process: its gRPC channel is reused across invocations."""
    with _clients_lock:
        found = _clients.get(database)
        if found is None:
            from google.cloud import firestore

            found = _clients[database] = firestore.Client(database=database)
        return found


def _failed(what: str, exc: Exception) -> UpstreamError:
    # The code name only: messages can echo document contents.
    code = getattr(exc, "code", None)
    name = getattr(code, "name", None) or (str(code) if code else None)
    return UpstreamError(f"{what} failed: {name or type(exc).__name__}")


class FirestoreHotStore:
    def __init__(self, database: str, collection: str) -> None:
        self.name = f"{database}/{collection}"
        self.collection = client(database).collection(collection)

    def _run(self, what: str, call: Callable[[], Any]) -> Any:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        try:
            return call()
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise _failed(f"Firestore {what} on {self.name}", exc) from None

    def put(self, reading: Mapping[str, Any]) -> None:
        doc = self.collection.document(document_id(str(reading[StorageKey.PARTITION]), str(reading[StorageKey.SORT])))
        self._run("set", lambda: doc.set(dict(reading)))

    def range_query(self, device_id: str, start: str, end: str) -> Any:
        from google.cloud.firestore import FieldFilter, Query

        return (self.collection
                .where(filter=FieldFilter(str(StorageKey.PARTITION), "==", device_id))
                .where(filter=FieldFilter(str(StorageKey.SORT), ">=", start))
                .where(filter=FieldFilter(str(StorageKey.SORT), "<=", end))
                .order_by(str(StorageKey.SORT), direction=Query.ASCENDING))

    def latest_query(self, device_id: str) -> Any:
        from google.cloud.firestore import FieldFilter, Query

        return (self.collection
                .where(filter=FieldFilter(str(StorageKey.PARTITION), "==", device_id))
                .order_by(str(StorageKey.SORT), direction=Query.DESCENDING)
                .limit(1))

    def expired_query(self, cutoff: str) -> Any:
        from google.cloud.firestore import FieldFilter

        return self.collection.where(filter=FieldFilter(str(StorageKey.SORT), "<", cutoff))

    def _documents(self, what: str, query: Any) -> list[dict[str, Any]]:
        return self._run(what, lambda: [dict(snap.to_dict() or {}) for snap in query.stream()])  # type: ignore[no-any-return]

    def query(self, device_id: str, start: str, end: str) -> list[dict[str, Any]]:
        return self._documents("query", self.range_query(device_id, start, end))

    def latest(self, device_id: str) -> dict[str, Any] | None:
        found = self._documents("query", self.latest_query(device_id))
        return found[0] if found else None

    def expired(self, cutoff: str) -> list[dict[str, Any]]:
        return self._documents("query", self.expired_query(cutoff))

    def delete(self, device_id: str, timestamp: str) -> None:
        # Deleting a missing document succeeds: a run interrupted after its delete repeats cleanly.
        doc = self.collection.document(document_id(device_id, timestamp))
        self._run("delete", lambda: doc.delete())


def hot_store(settings: Settings) -> FirestoreHotStore:
    return FirestoreHotStore(settings.require(Setting.FIRESTORE_DATABASE), settings.require(Setting.FIRESTORE_COLLECTION))
