"""The storage endpoint: every JSON-API call passes to the emulator, with the gaps listed in
`models.py` filled around it (preconditions before, storage classes and error shape after)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sandbox.core.http import label_request
from sandbox.gcp.common import GoogleError, error_response, now_rfc3339
from sandbox.gcp.storage.models import MULTI_REGIONS, STORAGE_CLASSES, StorageBackend

STORAGE_KEY: web.AppKey[StorageBackend] = web.AppKey("gcp_storage", StorageBackend)

_B = r"(?P<bucket>[^/]+)"
_O = r"(?P<object>.+?)"
# (method, path pattern, operation, mutating); the first match names the call.
ROUTES: tuple[tuple[str, re.Pattern[str], str, bool], ...] = tuple(
    (m, re.compile(p), op, mut) for m, p, op, mut in (
        ("POST", r"/storage/v1/b", "storage:buckets.insert", True),
        ("GET", r"/storage/v1/b", "storage:buckets.list", False),
        ("GET", rf"/storage/v1/b/{_B}", "storage:buckets.get", False),
        ("PATCH", rf"/storage/v1/b/{_B}", "storage:buckets.patch", True),
        ("PUT", rf"/storage/v1/b/{_B}", "storage:buckets.update", True),
        ("DELETE", rf"/storage/v1/b/{_B}", "storage:buckets.delete", True),
        ("GET", rf"/storage/v1/b/{_B}/iam", "storage:buckets.getIamPolicy", False),
        ("PUT", rf"/storage/v1/b/{_B}/iam", "storage:buckets.setIamPolicy", True),
        ("GET", rf"/storage/v1/b/{_B}/o", "storage:objects.list", False),
        ("POST", rf"/storage/v1/b/{_B}/o/{_O}/rewriteTo/b/(?P<dest_bucket>[^/]+)/o/(?P<dest_object>.+)",
         "storage:objects.rewrite", True),
        ("POST", rf"/storage/v1/b/{_B}/o/{_O}/copyTo/b/(?P<dest_bucket>[^/]+)/o/(?P<dest_object>.+)",
         "storage:objects.copy", True),
        ("POST", rf"/storage/v1/b/{_B}/o/{_O}/compose", "storage:objects.compose", True),
        ("GET", rf"/storage/v1/b/{_B}/o/{_O}", "storage:objects.get", False),
        ("PATCH", rf"/storage/v1/b/{_B}/o/{_O}", "storage:objects.patch", True),
        ("PUT", rf"/storage/v1/b/{_B}/o/{_O}", "storage:objects.update", True),
        ("DELETE", rf"/storage/v1/b/{_B}/o/{_O}", "storage:objects.delete", True),
        ("POST", rf"/upload/storage/v1/b/{_B}/o", "storage:objects.insert", True),
        ("PUT", rf"/upload/storage/v1/b/{_B}/o", "storage:objects.insert", True),
        ("GET", rf"/download/storage/v1/b/{_B}/o/{_O}", "storage:objects.get", False),
        ("POST", r"/batch/storage/v1", "storage:batch", True),
        ("PUT", rf"/{_B}/{_O}", "storage:xml.putObject", True),
    )
)
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length"})
_BUCKET_FIELDS = ("storageClass", "location", "lifecycle", "labels", "versioning", "cors", "website", "billing",
                  "iamConfiguration", "retentionPolicy", "softDeletePolicy", "logging", "encryption")


def _match(request: web.Request) -> tuple[str, bool, dict[str, str]] | None:
    path = request.path  # decoded: %2F in an object name is a slash here
    for method, pattern, operation, mutating in ROUTES:
        m = pattern.fullmatch(path)
        if m is not None and method == request.method:
            return operation, mutating, {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
    return None


def classify(request: web.Request) -> tuple[str | None, bool | None]:
    found = _match(request)
    return (found[0], found[1]) if found else (None, None)


def _error(status: int, reason: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "errors": [{"message": message, "domain": "global",
                                                                       "reason": reason}]}}
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


async def handle(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE_KEY]
    found = _match(request)
    if found is None:
        return _error(404, "notFound", f"No such API: {request.method} {request.path}")
    operation, mutating, params = found
    label_request(request, operation, mutating)
    try:
        body = await request.read()
        if operation == "storage:xml.putObject":
            signature = request.query.get("Signature", "")
            if not storage.signed_upload_ok(params["bucket"], params["object"], signature):
                return web.Response(status=403, content_type="application/xml", text=(
                    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied."
                    "</Message><Details>The signed URL is missing, expired or does not match.</Details></Error>"))
            return await _forward(request, storage, body)
        if operation == "storage:buckets.insert":
            return await _insert_bucket(request, storage, body)
        refused = await _preconditions(request, storage, operation, params, body)
        if refused is not None:
            return refused
        if operation == "storage:objects.compose":
            sources = (json.loads(body or b"{}").get("sourceObjects") or [])
            if not 1 <= len(sources) <= 32:
                return _error(400, "invalid", "The number of source components provided must be between 1 and 32.")
        response = await _forward(request, storage, body)
        if response.status == 200 and operation in ("storage:objects.insert", "storage:objects.rewrite",
                                                    "storage:objects.copy", "storage:objects.compose"):
            response = await _apply_class(request, storage, operation, params, body, response)
        if response.status in (200, 206) and operation == "storage:objects.get" and (
                request.path.startswith("/download/") or request.query.get("alt") == "media"):
            await _media_headers(storage, params, response)
        return response
    except GoogleError as exc:
        return error_response(exc)


async def _insert_bucket(request: web.Request, storage: StorageBackend, body: bytes) -> web.StreamResponse:
    try:
        resource = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "parseError", "Parse Error")
    if not isinstance(resource, dict) or not resource.get("name"):
        return _error(400, "required", "Required")
    storage_class = str(resource.get("storageClass") or "STANDARD").upper()
    if storage_class not in STORAGE_CLASSES:
        return _error(400, "invalid", f"Invalid argument: storage class {resource.get('storageClass')!r}.")
    response = await _forward(request, storage, json.dumps({"name": resource["name"]}).encode())
    if response.status != 200:
        return response
    location = str(resource.get("location") or "US").upper()
    patch: dict[str, Any] = {k: resource[k] for k in _BUCKET_FIELDS if k in resource}
    patch.update({"storageClass": storage_class, "location": location})
    status, patched = await storage.emulator("PATCH", f"/storage/v1/b/{quote(resource['name'], safe='')}", patch)
    if status != 200 or not isinstance(patched, dict):
        return _error(500, "backendError", "the bucket was created but its settings could not be applied")
    patched["locationType"] = "multi-region" if location in MULTI_REGIONS else (
        "dual-region" if location in ("NAM4", "EUR4", "ASIA1") else "region")
    # Keep what the emulator stores in step with what the bucket says.
    await storage.emulator("PATCH", f"/storage/v1/b/{quote(resource['name'], safe='')}",
                           {"locationType": patched["locationType"]})
    return web.json_response(patched)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise GoogleError("INVALID_ARGUMENT", f"invalid precondition value {value!r}") from exc


async def _preconditions(request: web.Request, storage: StorageBackend, operation: str, params: dict[str, str],
                         body: bytes) -> web.Response | None:
    q = request.query
    if_gen, if_not_gen, if_meta = (_int(q.get("ifGenerationMatch")), _int(q.get("ifGenerationNotMatch")),
                                   _int(q.get("ifMetagenerationMatch")))
    if if_gen is None and if_not_gen is None and if_meta is None:
        return None
    bucket, name = params.get("bucket", ""), params.get("object")
    if operation in ("storage:objects.rewrite", "storage:objects.copy"):
        bucket, name = params["dest_bucket"], params["dest_object"]
    elif operation == "storage:objects.compose":
        name = params["object"]
    elif operation == "storage:objects.insert":
        if request.method == "PUT":  # a resumable chunk: checked when the session began
            return None
        name = q.get("name")
        if name is None and body:
            name = _multipart_name(request, body)
    elif operation not in ("storage:objects.delete", "storage:objects.patch", "storage:objects.update",
                           "storage:objects.get"):
        return None
    current = await storage.object(bucket, name) if name else None
    generation = int(current["generation"]) if current else 0
    metageneration = int(current["metageneration"]) if current else 0
    if (if_gen is not None and if_gen != generation) or (if_not_gen is not None and if_not_gen == generation) or (
            if_meta is not None and if_meta != metageneration):
        return _error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
    return None


def _multipart_name(request: web.Request, body: bytes) -> str | None:
    """The object name from a multipart upload's JSON part, or from a resumable start's body."""
    if request.query.get("uploadType") == "resumable":
        try:
            return str(json.loads(body).get("name") or "") or None
        except ValueError:
            return None
    m = re.search(rb"\{.*?\}\r?\n", body, re.S)
    if m is None:
        return None
    try:
        return str(json.loads(m.group(0)).get("name") or "") or None
    except ValueError:
        return None


async def _apply_class(request: web.Request, storage: StorageBackend, operation: str, params: dict[str, str],
                       body: bytes, response: web.Response) -> web.Response:
    """Give the written object the class it asked for, or its bucket's default, as GCS does."""
    try:
        answered = json.loads(response.body or b"{}")  # type: ignore[arg-type]
    except ValueError:
        return response
    resource = answered.get("resource") if operation == "storage:objects.rewrite" else answered
    if not isinstance(resource, dict) or "bucket" not in resource or "name" not in resource:
        return response  # a resumable chunk (308) or a shape we do not know
    wanted: str | None = None
    if operation in ("storage:objects.rewrite", "storage:objects.copy"):
        try:
            wanted = (json.loads(body or b"{}") or {}).get("storageClass")
        except ValueError:
            wanted = None
    elif operation == "storage:objects.compose":
        wanted = ((json.loads(body or b"{}") or {}).get("destination") or {}).get("storageClass")
    elif operation == "storage:objects.insert":
        wanted = _declared_class(request, body, storage)
        if wanted == "":
            return response  # the upload named its class; the emulator kept it
    if wanted is None:
        bucket = await storage.bucket(str(resource["bucket"]))
        wanted = str((bucket or {}).get("storageClass") or "STANDARD")
    wanted = wanted.upper()
    if wanted not in STORAGE_CLASSES:
        return _error(400, "invalid", f"Invalid argument: storage class {wanted!r}.")
    if resource.get("storageClass") != wanted:
        path = f"/storage/v1/b/{quote(str(resource['bucket']), safe='')}/o/{quote(str(resource['name']), safe='')}"
        status, patched = await storage.emulator("PATCH", path, {"storageClass": wanted})
        if status == 200 and isinstance(patched, dict):
            patched["timeStorageClassUpdated"] = now_rfc3339()
            if operation == "storage:objects.rewrite":
                answered["resource"] = patched
            else:
                answered = patched
    out = web.json_response(answered, status=response.status)
    return out


async def _media_headers(storage: StorageBackend, params: dict[str, str], response: web.Response) -> None:
    """What GCS sends with an object's bytes and the emulator does not: its generation,
    metageneration and storage class (`google.cloud.storage` reads them into the blob after a
    download)."""
    current = await storage.object(params["bucket"], params["object"])
    if not current:
        return
    response.headers["X-Goog-Generation"] = str(current.get("generation", ""))
    response.headers["X-Goog-Metageneration"] = str(current.get("metageneration", ""))
    response.headers["X-Goog-Storage-Class"] = str(current.get("storageClass") or "STANDARD")
    response.headers["X-Goog-Stored-Content-Length"] = str(current.get("size", ""))
    if current.get("etag"):
        response.headers["ETag"] = str(current["etag"])


def _declared_class(request: web.Request, body: bytes, storage: StorageBackend) -> str | None:
    """'' if the upload named a storage class, None if it did not (then the bucket's default applies)."""
    if request.method == "PUT":
        session = request.query.get("upload_id", "")
        return "" if session in storage.named_class_sessions else None
    metadata: dict[str, Any] = {}
    if request.query.get("uploadType") == "resumable":
        try:
            metadata = json.loads(body or b"{}")
        except ValueError:
            metadata = {}
    else:
        m = re.search(rb"\{.*?\}\r?\n", body, re.S)
        if m is not None:
            try:
                metadata = json.loads(m.group(0))
            except ValueError:
                metadata = {}
    return "" if metadata.get("storageClass") else None


async def _forward(request: web.Request, storage: StorageBackend, body: bytes) -> web.Response:
    target = URL(storage.emulator_url + request.raw_path, encoded=True)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
    async with storage.session().request(request.method, target, headers=headers, data=body or None,
                                         allow_redirects=False,
                                         skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent",
                                                            "Accept")) as upstream:
        payload = await upstream.read()
        out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)
    if request.query.get("uploadType") == "resumable" and request.method == "POST" and upstream.status == 200:
        location = upstream.headers.get("Location", "")
        session = URL(location).query.get("upload_id", "")
        if session and _declared_class(request, body, storage) == "":
            storage.named_class_sessions.add(session)
    if upstream.status >= 400 and not upstream.headers.get("Content-Type", "").startswith("application/json"):
        reason = {404: "notFound", 409: "conflict", 400: "invalid"}.get(upstream.status, "backendError")
        text = payload.decode("utf-8", "replace").strip() or {404: "Not Found", 409: "Conflict"}.get(
            upstream.status, "Error")
        return _error(upstream.status, reason, text)
    if request.method == "HEAD" or upstream.status in (204, 304):
        return web.Response(status=upstream.status, headers=out)
    return web.Response(status=upstream.status, body=payload, headers=out)
