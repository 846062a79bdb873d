"""Cloud Storage: the maintained emulator (`gcp-storage-emulator`, in memory, in this process) behind
the sandbox's storage endpoint, plus what the emulator lacks (filled in `responses.py`):

- bucket insert ignores `storageClass`, `location` and everything but the name (always STANDARD/US):
  the sandbox validates the class and applies the resource's fields right after the insert;
- objects never take their bucket's default class: new objects get it unless they name one;
- rewrite and copy ignore the destination's `storageClass`: the sandbox applies it (or the
  destination bucket's default), so `blob.update_storage_class("ARCHIVE")` reads back ARCHIVE;
- `ifGenerationMatch` / `ifGenerationNotMatch` / `ifMetagenerationMatch` are ignored: the sandbox
  checks them (412 conditionNotMet) on uploads, deletes, rewrites, copies and composes;
- compose accepts any number of sources: the sandbox refuses more than 32, as GCS does;
- a media download lacks `X-Goog-Generation`, `X-Goog-Metageneration` and `X-Goog-Storage-Class`,
  which `google.cloud.storage` copies into the blob: the sandbox adds them;
- errors come back without Google's JSON shape: the sandbox wraps them.

It also issues the signed upload URLs of Cloud Functions' `generateUploadUrl`: an XML-API
`PUT /{bucket}/{object}?Expires=..&Signature=..` the sandbox accepts only with the signature it
issued, into the `gcf-v2-uploads-*` bucket, where a deploy then reads the source from.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp

from sandbox.gcp.common import PROJECT_NUMBER

STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL",
                             "DURABLE_REDUCED_AVAILABILITY"})
UPLOAD_URL_SECONDS = 15 * 60  # generateUploadUrl's signed URL is valid for a limited time
MULTI_REGIONS = frozenset({"US", "EU", "ASIA"})


class StorageBackend:
    def __init__(self) -> None:
        self._server: Any = None
        self.emulator_url = ""
        self.endpoint = ""  # the sandbox's storage endpoint (set once it listens)
        self._uploads: dict[tuple[str, str], tuple[str, float]] = {}  # (bucket, object) -> (signature, expiry)
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None
        # Resumable sessions whose start named a storage class (their last chunk keeps it).
        self.named_class_sessions: set[str] = set()

    # --- the emulator -----------------------------------------------------------------------------

    def start(self) -> str:
        from gcp_storage_emulator.server import create_server

        server = create_server("127.0.0.1", 0, in_memory=True, project_number=PROJECT_NUMBER)
        server.start()
        self._server = server
        port = server._api._httpd.server_address[1]
        self.emulator_url = f"http://127.0.0.1:{port}"
        return self.emulator_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            # The emulator's stop() shuts its HTTP server down without joining the thread.
            threading.Thread.join(server._api, timeout=5)

    def reset(self) -> None:
        if self._server is not None:
            self._server.wipe()
        with self._lock:
            self._uploads.clear()
            self.named_class_sessions.clear()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                                  timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- direct calls to the emulator (the sandbox's own, not a client's) -------------------------------

    async def emulator(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session().request(method, self.emulator_url + path, data=data, headers=headers) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, None

    async def bucket(self, name: str) -> dict[str, Any] | None:
        status, body = await self.emulator("GET", f"/storage/v1/b/{quote(name, safe='')}")
        return body if status == 200 and isinstance(body, dict) else None

    async def object(self, bucket: str, name: str) -> dict[str, Any] | None:
        status, body = await self.emulator("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}")
        return body if status == 200 and isinstance(body, dict) else None

    async def read_object(self, bucket: str, name: str) -> bytes:
        """An object's bytes; KeyError if it does not exist."""
        path = f"/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?alt=media"
        async with self.session().get(self.emulator_url + path) as resp:
            if resp.status != 200:
                raise KeyError(f"gs://{bucket}/{name}")
            return await resp.read()

    # --- Cloud Functions' signed upload URLs ----------------------------------------------------------

    async def issue_upload(self, location: str) -> dict[str, Any]:
        bucket = f"gcf-v2-uploads-{PROJECT_NUMBER}-{location}"
        if await self.bucket(bucket) is None:
            await self.emulator("POST", "/storage/v1/b", {"name": bucket})
        obj = f"{uuid.uuid4()}.zip"
        signature = secrets.token_urlsafe(24)
        expires = int(time.time()) + UPLOAD_URL_SECONDS
        with self._lock:
            self._uploads[(bucket, obj)] = (signature, float(expires))
        url = (f"{self.endpoint}/{bucket}/{obj}?GoogleAccessId=service-{PROJECT_NUMBER}%40gcf-admin-robot.iam."
               f"gserviceaccount.com&Expires={expires}&Signature={quote(signature, safe='')}")
        return {"uploadUrl": url, "storageSource": {"bucket": bucket, "object": obj}}

    def signed_upload_ok(self, bucket: str, obj: str, signature: str) -> bool:
        with self._lock:
            issued = self._uploads.get((bucket, obj))
        return issued is not None and issued[1] >= time.time() and hmac.compare_digest(issued[0], signature)

    def ready(self) -> bool:
        return self._server is not None
