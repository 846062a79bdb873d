"""Cold and archive storage in Blob Storage (azure-storage-blob imported when used): Cool tier
for cold, Archive tier for archive; uploads overwrite, so a repeated write is idempotent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from shared.contracts import Setting

COLD_TIER = "Cool"
ARCHIVE_TIER = "Archive"


def _failed(what: str, exc: Exception) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    return UpstreamError(f"{what} failed: {status or type(exc).__name__}")


class BlobStore:
    def __init__(self, connection_string: str, container: str, tier: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.name = container
        self.tier = tier
        self.container = BlobServiceClient.from_connection_string(connection_string).get_container_client(container)

    def _run(self, what: str, call: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return call()
        except AzureError as exc:
            raise _failed(f"Blob {what} in {self.name}", exc) from None

    def put(self, key: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings, StandardBlobTier

        self._run("upload", lambda: self.container.upload_blob(
            key, data, overwrite=True, standard_blob_tier=StandardBlobTier(self.tier),
            content_settings=ContentSettings(content_type="application/json")))

    def get(self, key: str) -> bytes:
        return bytes(self._run("download", lambda: self.container.download_blob(key).readall()))

    def older_than(self, cutoff: datetime) -> list[tuple[str, int]]:
        blobs = self._run("list", lambda: list(self.container.list_blobs()))
        return [(b.name, int(b.size)) for b in blobs if b.last_modified is not None and b.last_modified < cutoff]

    def delete(self, key: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self.container.delete_blob(key)
        except ResourceNotFoundError:
            return  # already moved by an earlier, interrupted run
        except AzureError as exc:
            raise _failed(f"Blob delete in {self.name}", exc) from None


def cold_store(settings: Settings) -> BlobStore:
    return BlobStore(settings.require(Setting.BLOB_CONNECTION_STRING),
                     settings.require(Setting.COLD_STORAGE_CONTAINER), COLD_TIER)


def archive_store(settings: Settings) -> BlobStore:
    return BlobStore(settings.require(Setting.BLOB_CONNECTION_STRING),
                     settings.require(Setting.ARCHIVE_STORAGE_CONTAINER), ARCHIVE_TIER)
