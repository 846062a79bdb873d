"""The control plane's bundle store: deployment bundles (`shared.bundle`) kept content-addressed
in Blob storage, in the container `TWIN_BUNDLE_CONTAINER_URL` names (Azurite in the sandbox).

- The API stores a bundle once it is accepted (`put`), under `bundles/sha256/{hex}.zip`; the
  same content is the same blob, so storing it again writes nothing.
- Durable carries only references (`UserCodeRef`: bundle digest, folder, folder digest); a
  provider reads the folders it packages (`user_code_folders`), and each read is checked against
  the digests, so a blob changed after it was accepted is refused, never deployed.

Reads are cached per process (a deployment packages many functions from one bundle).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from activities.clouds import Clouds, clouds_from_environ
from shared.bundle import BundleError, open_stored
from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError, TransientError
from shared.resources import UserCodeRef

PREFIX = "bundles/sha256/"
CACHED_BUNDLES = 8
"""Bundles kept in memory per process (at most 64 MiB each uncompressed)."""


class StoreUnavailable(Exception):
    """The bundle store is not configured or cannot be reached; the message says which."""


def blob_name(sha256: str) -> str:
    return f"{PREFIX}{sha256}.zip"


class BundleStore:
    """One container of bundles."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def put(self, sha256: str, data: bytes) -> bool:
        """Keep `data` under its digest; False when it was there already (nothing written)."""
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

        blob = self.container.get_blob_client(blob_name(sha256))
        try:
            if blob.exists():
                return False
            try:
                blob.upload_blob(data, overwrite=False, content_type="application/zip")
            except ResourceNotFoundError:
                # The container is missing (first bundle ever): create it, then store.
                with contextlib.suppress(ResourceExistsError):
                    self.container.create_container()
                blob.upload_blob(data, overwrite=False, content_type="application/zip")
        except ResourceExistsError:
            return False  # stored meanwhile by a concurrent request: same name, same content
        except AzureError as exc:
            raise StoreUnavailable(f"the bundle store cannot be written: {type(exc).__name__}") from None
        return True

    def get(self, sha256: str) -> bytes:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return bytes(self.container.get_blob_client(blob_name(sha256)).download_blob().readall())
        except ResourceNotFoundError:
            raise PermanentError(f"bundle {sha256[:12]}... is not in the bundle store; deploy the bundle again") from None
        except AzureError as exc:
            raise TransientError(f"the bundle store cannot be read: {type(exc).__name__}") from None

    def exists(self, sha256: str) -> bool:
        return bool(self.container.get_blob_client(blob_name(sha256)).exists())


def store(clouds: Clouds | None = None) -> BundleStore:
    """The configured store; `StoreUnavailable` naming the setting when there is none."""
    cl = clouds or clouds_from_environ()
    url = cl.bundle_container_url()
    if url is None:
        raise StoreUnavailable(f"the control plane has no bundle store: set {ControlPlaneSetting.BUNDLE_CONTAINER_URL} "
                               "to a blob container URL (the local commands set it for the sandbox)")
    try:
        return BundleStore(cl.blob_container(url))
    except (ValueError, PermanentError) as exc:
        raise StoreUnavailable(f"{ControlPlaneSetting.BUNDLE_CONTAINER_URL}: {exc}") from None


_cache: OrderedDict[str, dict[str, bytes]] = OrderedDict()
_cache_lock = threading.Lock()


def bundle_files(sha256: str) -> dict[str, bytes]:
    """The files of stored bundle `sha256`, checked against its digest (cached per process)."""
    with _cache_lock:
        if sha256 in _cache:
            _cache.move_to_end(sha256)
            return _cache[sha256]
    try:
        data = store().get(sha256)
    except StoreUnavailable as exc:
        raise PermanentError(str(exc)) from None
    try:
        files = open_stored(data, sha256)
    except (ValueError, BundleError) as exc:
        raise PermanentError(f"stored bundle {sha256[:12]}... cannot be used: {exc}") from None
    with _cache_lock:
        _cache[sha256] = files
        while len(_cache) > CACHED_BUNDLES:
            _cache.popitem(last=False)
    return files


def user_code_folders(refs: Iterable[UserCodeRef]) -> list[Any]:
    """The folders `refs` name, read from the store, for `payload_functions.packaging`
    (which checks each against its digest)."""
    from payload_functions.packaging import UserCodeFolder

    out = []
    for ref in refs:
        files = bundle_files(ref.bundle)
        prefix = ref.path + "/"
        found = {name[len(prefix):]: data for name, data in files.items() if name.startswith(prefix)}
        if not found:
            raise PermanentError(f"bundle {ref.bundle[:12]}... has no folder {ref.path} ({ref.kind} {ref.name})")
        out.append(UserCodeFolder(ref, found))
    return out
