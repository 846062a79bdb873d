"""Cold and archive storage in Cloud Storage (google-cloud-storage imported when used).

Cold is a NEARLINE bucket, archive an ARCHIVE bucket (the GCP provider creates them with that
default class); each object is also written with its class explicitly, so it lands in the right
class whatever the bucket's default. Uploads overwrite the object of the same name, so a repeated
write is idempotent (and the client retries it on transient errors). Objects are never rewritten
in place: NEARLINE keeps an object 30 days and ARCHIVE 365 days before deleting it stops costing
the remainder, so the movers write each chunk once and delete it once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from shared.contracts import Setting

COLD_STORAGE_CLASS = "NEARLINE"
ARCHIVE_STORAGE_CLASS = "ARCHIVE"

_client: Any = None
_client_lock = threading.Lock()


def client() -> Any:
    """One client per process (its HTTP session is reused across invocations)."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud.storage import Client

            _client = Client()
        return _client


def _failed(what: str, exc: Exception) -> UpstreamError:
    status = getattr(exc, "code", None)
    return UpstreamError(f"{what} failed: {status or type(exc).__name__}")


class GcsStore:
    def __init__(self, bucket: str, storage_class: str) -> None:
        self.name = bucket
        self.storage_class = storage_class
        self.bucket = client().bucket(bucket)

    def _run(self, what: str, call: Callable[[], Any]) -> Any:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        try:
            return call()
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise _failed(f"Cloud Storage {what} in {self.name}", exc) from None

    def put(self, key: str, data: bytes) -> None:
        blob = self.bucket.blob(key)
        blob.storage_class = self.storage_class
        self._run("upload", lambda: blob.upload_from_string(data, content_type="application/json"))

    def get(self, key: str) -> bytes:
        return bytes(self._run("download", lambda: self.bucket.blob(key).download_as_bytes()))

    def older_than(self, cutoff: datetime) -> list[tuple[str, int]]:
        blobs = self._run("list", lambda: list(client().list_blobs(self.bucket)))
        return [(b.name, int(b.size or 0)) for b in blobs if b.time_created is not None and b.time_created < cutoff]

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import GoogleAPIError, NotFound
        from google.auth.exceptions import GoogleAuthError

        try:
            self.bucket.blob(key).delete()
        except NotFound:
            return  # already moved by an earlier, interrupted run
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise _failed(f"Cloud Storage delete in {self.name}", exc) from None


def cold_store(settings: Settings) -> GcsStore:
    return GcsStore(settings.require(Setting.COLD_GCS_BUCKET), COLD_STORAGE_CLASS)


def archive_store(settings: Settings) -> GcsStore:
    return GcsStore(settings.require(Setting.ARCHIVE_GCS_BUCKET), ARCHIVE_STORAGE_CLASS)
