"""State of the sandbox's Azure Digital Twins instances: models, twins, relationships, telemetry.

One `DigitalTwinsBackend` per sandbox holds every instance. ARM creates and deletes instances
through the resource hooks (`on_put` / `on_delete`); the data plane (responses.py) calls the
methods here, which raise `AdtError` carrying ADT's status, error code and message.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.core.context import SandboxContext
from sandbox.digitaltwins import dtdl
from sandbox.digitaltwins.query import QueryError, parse_query

RESOURCE_TYPE = "Microsoft.DigitalTwins/digitalTwinsInstances"
URL_PREFIX = "/digitaltwins-instances"
DATA_OWNER_ROLE = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"
DATA_READER_ROLE = "d57506d4-4c8d-48b1-8587-93c323f6a5a3"

MAX_MODELS_PER_UPLOAD = 250
MODELS_PAGE_SIZE = 100
QUERY_PAGE_SIZE = 1000
RELATIONSHIPS_PAGE_SIZE = 100
# Create/update/delete operations on one twin or its relationships, per second (not adjustable).
TWIN_WRITES_PER_SECOND = 10
TELEMETRY_KEPT = 1000
WRITE_HISTORY_KEPT = 10_000

_DOCS_TWINS = "https://aka.ms/adtv2twins"
_DOCS_QUERY = "https://aka.ms/adtv2query"
_DOCS_MODELS = "https://aka.ms/adtv2models"


class AdtError(Exception):
    """An ADT data-plane error: `{"error": {"code", "message"}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def twin_not_found(twin_id: str) -> AdtError:
    return AdtError(
        404,
        "DigitalTwinNotFound",
        f"There is no digital twin instance that exists with the ID {twin_id}. Please verify that the twin id "
        f"is valid and ensure that the twin is not deleted. See section on querying the twins {_DOCS_QUERY}.",
    )


def model_not_found(model_id: str) -> AdtError:
    return AdtError(
        404,
        "ModelNotFound",
        f"There is no Model(s) available that matches the provided id(s) {model_id}. Check that the Model ID "
        "provided is valid by doing a Model_List API call.",
    )


def relationship_not_found(twin_id: str, rel_id: str) -> AdtError:
    return AdtError(
        404,
        "RelationshipNotFound",
        f"There is no relationship with the ID {rel_id} on the digital twin {twin_id}. See section on "
        f"retrieving relationships {_DOCS_TWINS}.",
    )


def validation_failed(problems: list[str], what: str = "twin") -> AdtError:
    return AdtError(
        400,
        "ValidationFailed",
        f"Invalid {what}: " + " ".join(problems) + f" See section on model validation {_DOCS_MODELS}.",
    )


def patch_invalid(message: str) -> AdtError:
    return AdtError(
        400,
        "JsonPatchInvalid",
        f"{message} Please provide a valid patch document. See section on update apis in the documentation "
        f"{_DOCS_TWINS}.",
    )


def precondition_failed(message: str) -> AdtError:
    return AdtError(412, "PreconditionFailed", message)


@dataclass
class StoredModel:
    parsed: dtdl.ParsedModel
    upload_time: str
    decommissioned: bool = False

    def summary(self, include_definition: bool) -> dict[str, Any]:
        d = self.parsed.definition
        out: dict[str, Any] = {
            "id": self.parsed.id,
            "description": _language_map(d.get("description")),
            "displayName": _language_map(d.get("displayName")),
            "decommissioned": self.decommissioned,
            "uploadTime": self.upload_time,
        }
        if include_definition:
            out["model"] = copy.deepcopy(d)
        return out


def _language_map(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return {"en": value}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {}


def _match(header_value: str | None, etag: str) -> bool:
    if header_value is None:
        return True
    candidates = [v.strip() for v in header_value.split(",")]
    return "*" in candidates or etag in candidates


@dataclass
class Instance:
    """One Digital Twins instance's data."""

    name: str
    resource_id: str
    host_key: str  # "<name>-<n>": the path segment under /digitaltwins-instances/
    models: dict[str, StoredModel] = field(default_factory=dict)
    twins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (source id, relationship id) -> relationship document
    relationships: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    telemetry: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TELEMETRY_KEPT))
    _writes: dict[str, deque[float]] = field(default_factory=dict)
    # Every write attempt per twin (monotonic time, admitted?), for tests and benchmarks to
    # measure writes per second as the service saw them.
    _history: dict[str, deque[tuple[float, bool]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- throttling ----------------------------------------------------------------------------

    def admit_write(self, twin_id: str, now: float | None = None) -> None:
        """Count one create/update/delete on `twin_id` (or its relationships); 429 past 10 per second."""
        now = time.monotonic() if now is None else now
        window = self._writes.setdefault(twin_id, deque())
        history = self._history.setdefault(twin_id, deque(maxlen=WRITE_HISTORY_KEPT))
        while window and window[0] <= now - 1.0:
            window.popleft()
        history.append((now, len(window) < TWIN_WRITES_PER_SECOND))
        if len(window) >= TWIN_WRITES_PER_SECOND:
            wait = max(1, math.ceil(window[0] + 1.0 - now))
            raise AdtError(
                429,
                "TooManyRequests",
                f"Too many requests on the digital twin {twin_id}: at most {TWIN_WRITES_PER_SECOND} create, "
                "update or delete operations per second are allowed on a single twin and its relationships. "
                "Retry after the time given in Retry-After.",
                {"Retry-After": str(wait)},
            )
        window.append(now)

    def write_attempts(self, twin_id: str) -> list[tuple[float, bool]]:
        """(time.monotonic() at arrival, admitted) of the latest write attempts on one twin."""
        with self.lock:
            return list(self._history.get(twin_id, ()))

    # --- models --------------------------------------------------------------------------------

    def parsed_models(self) -> dict[str, dtdl.ParsedModel]:
        return {mid: m.parsed for mid, m in self.models.items()}

    def add_models(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, list):
            raise AdtError(400, "InvalidArgument", "The request body must be a JSON array of DTDL interfaces.")
        if not body:
            raise AdtError(400, "InvalidArgument", "The list of models is empty. Provide at least one model.")
        if len(body) > MAX_MODELS_PER_UPLOAD:
            raise AdtError(
                400,
                "InvalidArgument",
                f"The request contains {len(body)} models; at most {MAX_MODELS_PER_UPLOAD} models can be "
                "uploaded in a single call. Split the upload into several calls, in dependency order.",
            )
        try:
            batch = [dtdl.parse_interface(d, i) for i, d in enumerate(body)]
        except dtdl.DtdlError as exc:
            raise AdtError(400, "DTDLParserError", str(exc)) from exc
        with self.lock:
            ids = [m.id for m in batch]
            dup_in_batch = sorted({i for i in ids if ids.count(i) > 1})
            if dup_in_batch:
                raise AdtError(
                    400, "DTDLParserError", f"Invalid model: the batch contains {', '.join(dup_in_batch)} more than once."
                )
            existing = [i for i in ids if i in self.models]
            if existing:
                raise AdtError(
                    409,
                    "ModelIdAlreadyExists",
                    f"Some of the model ids already exist: {', '.join(existing)}. Use Model_List API to view models "
                    "that already exist. See the Swagger example (http://aka.ms/ModelListSwSmpl).",
                )
            known = self.parsed_models()
            known.update({m.id: m for m in batch})
            missing = sorted({ref for m in batch for ref in m.references if ref not in known})
            if missing:
                raise AdtError(
                    400,
                    "DTDLParserError",
                    "None of the models in this set could be validated due to missing references: "
                    f"{', '.join(missing)}. Upload the referenced models first or in the same call.",
                )
            try:
                for m in batch:
                    dtdl.resolve_contents(m.id, known)
            except dtdl.DtdlError as exc:
                raise AdtError(400, "DTDLParserError", str(exc)) from exc
            uploaded = datetime.now(UTC).isoformat()  # ADT: 2023-01-09T22:11:45.217656+00:00
            for m in batch:
                self.models[m.id] = StoredModel(m, uploaded)
            return [self.models[m.id].summary(False) for m in batch]

    def get_model(self, model_id: str) -> StoredModel:
        with self.lock:
            model = self.models.get(model_id)
            if model is None:
                raise model_not_found(model_id)
            return model

    def list_models(self, dependencies_for: list[str] | None) -> list[StoredModel]:
        with self.lock:
            if not dependencies_for:
                return list(self.models.values())
            wanted: set[str] = set()
            stack = list(dependencies_for)
            while stack:
                mid = stack.pop()
                if mid in wanted:
                    continue
                model = self.models.get(mid)
                if model is None:
                    raise model_not_found(mid)
                wanted.add(mid)
                stack.extend(model.parsed.references)
            return [m for mid, m in self.models.items() if mid in wanted]

    def decommission_model(self, model_id: str, patch: Any) -> None:
        ops = patch if isinstance(patch, list) else None
        if (
            not ops
            or not all(isinstance(op, dict) for op in ops)
            or any(op.get("op") != "replace" or op.get("path") != "/decommissioned" or op.get("value") is not True for op in ops)
        ):
            raise patch_invalid("Only {\"op\": \"replace\", \"path\": \"/decommissioned\", \"value\": true} is supported on a model.")
        with self.lock:
            self.get_model(model_id).decommissioned = True

    def delete_model(self, model_id: str) -> None:
        with self.lock:
            self.get_model(model_id)
            referrers = sorted(mid for mid, m in self.models.items() if mid != model_id and model_id in m.parsed.references)
            if referrers:
                raise AdtError(
                    409,
                    "ModelReferencesNotDeleted",
                    f"The model {model_id} is referenced by other models: {', '.join(referrers)}. Delete those "
                    "models first.",
                )
            users = sorted(tid for tid, t in self.twins.items() if t["$metadata"]["$model"] == model_id)
            if users:
                raise AdtError(
                    409,
                    "ModelReferencesNotDeleted",
                    f"The model {model_id} is used by {len(users)} digital twin(s), e.g. {users[0]}. Delete or "
                    "re-model those twins first.",
                )
            del self.models[model_id]

    def is_of_model(self, doc: dict[str, Any], model_id: str, exact: bool) -> bool:
        model = doc.get("$metadata", {}).get("$model") if isinstance(doc.get("$metadata"), dict) else None
        if not isinstance(model, str):
            return False
        if exact:
            return model == model_id
        return model_id in dtdl.ancestors(model, self.parsed_models())

    # --- twins ---------------------------------------------------------------------------------

    def _model_for_twin(self, model_id: Any, *, new: bool) -> StoredModel:
        if not isinstance(model_id, str) or not model_id:
            raise validation_failed(["The twin has no model: '$metadata.$model' is required."])
        model = self.models.get(model_id)
        if model is None:
            raise validation_failed([f"The model {model_id} of the twin does not exist in this instance."])
        if new and model.decommissioned:
            raise validation_failed([f"The model {model_id} is decommissioned; new twins cannot use it."])
        return model

    def _check_content(self, model_id: str, content: dict[str, Any], path: str = "") -> list[str]:
        """Problems with a twin's (or component's) properties against its interface."""
        models = self.parsed_models()
        contents = dtdl.resolve_contents(model_id, models)
        named = dtdl.named_schemas(model_id, models)
        problems: list[str] = []
        for key, value in content.items():
            if key in ("$dtId", "$etag", "$metadata"):
                continue
            where = f"{path}/{key}"
            if key.startswith("$"):
                problems.append(f"'{where}' is not a settable system property.")
                continue
            c = contents.get(key)
            if c is None:
                problems.append(f"'{where}': '{key}' is not defined in the model {model_id}.")
            elif c.kind == "Property":
                problems.extend(dtdl.check_value(c.element.get("schema"), value, where, named))
            elif c.kind == "Component":
                if not isinstance(value, dict):
                    problems.append(f"'{where}': component '{key}' must be a JSON object with '$metadata'.")
                else:
                    problems.extend(self._check_content(c.element["schema"], value, where))
            else:
                problems.append(
                    f"'{where}': '{key}' is a {c.kind} of {model_id}, not a Property; only Properties and "
                    "Components can be set on a twin."
                )
        for name, c in contents.items():
            if c.kind == "Component" and name not in content:
                problems.append(f"'{path}/{name}': the component '{name}' is missing; set it, at least as {{\"$metadata\": {{}}}}.")
        return problems

    def _stamp(self, content: dict[str, Any], previous: dict[str, Any] | None, changed: set[str] | None, now: str) -> None:
        """Fill `$metadata` per property: `lastUpdateTime` changes only for properties written now."""
        meta = content.setdefault("$metadata", {})
        prev_meta = (previous or {}).get("$metadata", {}) if isinstance(previous, dict) else {}
        for key, value in content.items():
            if key.startswith("$"):
                continue
            if isinstance(value, dict) and "$metadata" in value:
                sub = None if changed is None or key in changed else _sub_changed(changed, key)
                self._stamp(value, (previous or {}).get(key), sub, now)
                continue
            touched = changed is None or key in changed or any(c.startswith(key + "/") for c in changed)
            old = prev_meta.get(key) if isinstance(prev_meta, dict) else None
            if touched or not isinstance(old, dict):
                fresh: dict[str, Any] = {"lastUpdateTime": now}
                # ADT keeps a property's sourceTime when only its value is written later.
                if isinstance(old, dict) and "sourceTime" in old:
                    fresh["sourceTime"] = old["sourceTime"]
                meta[key] = fresh
            else:
                meta[key] = old
        for key in [k for k in meta if not k.startswith("$") and k not in content]:
            del meta[key]

    def upsert_twin(self, twin_id: str, body: Any, if_none_match: str | None, if_match: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise AdtError(400, "InvalidArgument", "The twin must be a JSON object.")
        with self.lock:
            self.admit_write(twin_id)
            existing = self.twins.get(twin_id)
            if if_none_match is not None and if_none_match.strip() == "*" and existing is not None:
                raise precondition_failed(
                    f"If-None-Match: * header was specified but a twin with the id {twin_id} was found. Please "
                    f"specify a different twin id. See section on twin creation {_DOCS_TWINS}."
                )
            if if_match is not None:
                if existing is None:
                    raise twin_not_found(twin_id)
                if not _match(if_match, existing["$etag"]):
                    raise precondition_failed(
                        f"If-Match header value {if_match} does not match the current ETag of the twin {twin_id}."
                    )
            if "$dtId" in body and body["$dtId"] != twin_id:
                raise AdtError(400, "InvalidArgument", f"'$dtId' {body['$dtId']!r} does not match the twin id {twin_id!r} in the URL.")
            meta = body.get("$metadata")
            if not isinstance(meta, dict):
                raise validation_failed(["The twin has no '$metadata' object with '$model'."])
            model_id = self._model_for_twin(
                meta.get("$model"), new=existing is None or existing["$metadata"]["$model"] != meta.get("$model")
            ).parsed.id
            content = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("$etag", "$dtId", "$metadata")}
            problems = self._check_content(model_id, content)
            if problems:
                raise validation_failed(problems)
            now = _now_iso()
            twin: dict[str, Any] = {"$dtId": twin_id, "$etag": _new_etag()}
            twin.update(content)
            twin["$metadata"] = {"$model": model_id, "$lastUpdateTime": now}
            _strip_component_metadata(twin)
            self._stamp(twin, None, None, now)
            twin["$metadata"]["$model"] = model_id
            _source_times_from_body(twin, body)
            self.twins[twin_id] = twin
            return copy.deepcopy(twin)

    def get_twin(self, twin_id: str) -> dict[str, Any]:
        with self.lock:
            twin = self.twins.get(twin_id)
            if twin is None:
                raise twin_not_found(twin_id)
            return copy.deepcopy(twin)

    def patch_twin(self, twin_id: str, patch: Any, if_match: str | None, component: str | None = None) -> str:
        """Apply a JSON Patch with ADT's semantics; returns the new ETag."""
        with self.lock:
            self.admit_write(twin_id)
            twin = self.twins.get(twin_id)
            if twin is None:
                raise twin_not_found(twin_id)
            if not _match(if_match, twin["$etag"]):
                raise precondition_failed(
                    f"If-Match header value {if_match} does not match the current ETag of the twin {twin_id}."
                )
            ops = _check_patch_ops(patch)
            work = copy.deepcopy(twin)
            target = work
            prefix = ""
            if component is not None:
                contents = dtdl.resolve_contents(work["$metadata"]["$model"], self.parsed_models())
                c = contents.get(component)
                if c is None or c.kind != "Component" or component not in work:
                    raise AdtError(
                        404, "ComponentNotFound", f"The component {component} does not exist on the digital twin {twin_id}."
                    )
                target = work[component]
                prefix = f"/{component}"
            changed: set[str] = set()
            # sourceTime ops apply after the values (a patch may list them first) and the stamping.
            source_times: list[tuple[dict[str, Any], list[str]]] = []
            for op in ops:
                parts = _pointer(op["path"])
                if component is None and parts[:2] == ["$metadata", "$model"] and len(parts) == 2:
                    if op["op"] == "remove":
                        raise patch_invalid("The model of a twin cannot be removed.")
                    self._model_for_twin(op.get("value"), new=True)
                    work["$metadata"]["$model"] = op["value"]
                    continue
                if _is_source_time_path(parts):
                    source_times.append((op, parts))
                    continue
                if any(p.startswith("$") for p in parts):
                    raise patch_invalid(f"Could not resolve path {prefix}{op['path']}: system properties cannot be patched.")
                _apply_op(target, op, parts, prefix)
                # Pointers of what was written ("prop", "comp/prop"): their lastUpdateTime moves.
                full = ([component] if component else []) + parts
                changed.add("/".join(full[:2]))
            model_id = work["$metadata"]["$model"]
            problems = self._check_content(model_id, {k: v for k, v in work.items() if not k.startswith("$")})
            if problems:
                raise validation_failed(problems)
            now = _now_iso()
            _strip_component_metadata(work, keep=True)
            self._stamp(work, twin, changed, now)
            for op, parts in source_times:
                _apply_source_time(target, op, parts, prefix)
            work["$metadata"]["$lastUpdateTime"] = now
            work["$etag"] = _new_etag()
            self.twins[twin_id] = work
            return str(work["$etag"])

    def get_component(self, twin_id: str, component: str) -> dict[str, Any]:
        with self.lock:
            twin = self.get_twin(twin_id)
            contents = dtdl.resolve_contents(twin["$metadata"]["$model"], self.parsed_models())
            c = contents.get(component)
            if c is None or c.kind != "Component" or component not in twin:
                raise AdtError(
                    404, "ComponentNotFound", f"The component {component} does not exist on the digital twin {twin_id}."
                )
            return dict(twin[component])

    def delete_twin(self, twin_id: str, if_match: str | None) -> None:
        with self.lock:
            self.admit_write(twin_id)
            twin = self.twins.get(twin_id)
            if twin is None:
                raise twin_not_found(twin_id)
            if not _match(if_match, twin["$etag"]):
                raise precondition_failed(
                    f"If-Match header value {if_match} does not match the current ETag of the twin {twin_id}."
                )
            if any(src == twin_id or rel["$targetId"] == twin_id for (src, _), rel in self.relationships.items()):
                raise AdtError(
                    400,
                    "RelationshipsNotDeleted",
                    f"Twin {twin_id} has active relationships. Cannot delete a twin unless all the relationships "
                    "are deleted. Please ensure that the active relationships on the twin are deleted. See section "
                    f"on retrieving relationships {_DOCS_TWINS}.",
                )
            del self.twins[twin_id]

    # --- relationships -------------------------------------------------------------------------

    def upsert_relationship(
        self, source_id: str, rel_id: str, body: Any, if_none_match: str | None, if_match: str | None
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise AdtError(400, "InvalidArgument", "The relationship must be a JSON object.")
        with self.lock:
            self.admit_write(source_id)
            source = self.twins.get(source_id)
            if source is None:
                raise twin_not_found(source_id)
            existing = self.relationships.get((source_id, rel_id))
            if if_none_match is not None and if_none_match.strip() == "*" and existing is not None:
                raise precondition_failed(
                    f"If-None-Match: * header was specified but a relationship with the id {rel_id} was found on "
                    f"the twin {source_id}."
                )
            if if_match is not None:
                if existing is None:
                    raise relationship_not_found(source_id, rel_id)
                if not _match(if_match, existing["$etag"]):
                    raise precondition_failed(
                        f"If-Match header value {if_match} does not match the current ETag of the relationship {rel_id}."
                    )
            for key, expected in (("$relationshipId", rel_id), ("$sourceId", source_id)):
                if key in body and body[key] != expected:
                    raise AdtError(400, "InvalidArgument", f"'{key}' {body[key]!r} does not match {expected!r} in the URL.")
            name = body.get("$relationshipName")
            target_id = body.get("$targetId")
            if not isinstance(name, str) or not name:
                raise validation_failed(["'$relationshipName' is required."], "relationship")
            if not isinstance(target_id, str) or not target_id:
                raise validation_failed(["'$targetId' is required."], "relationship")
            if existing is not None and (existing["$relationshipName"] != name):
                raise validation_failed([f"The relationship {rel_id} exists with the name {existing['$relationshipName']}; its name cannot change."], "relationship")
            models = self.parsed_models()
            source_model = source["$metadata"]["$model"]
            c = dtdl.resolve_contents(source_model, models).get(name)
            if c is None or c.kind != "Relationship":
                raise validation_failed([f"The relationship '{name}' is not defined in the model {source_model} of the source twin {source_id}."], "relationship")
            target = self.twins.get(target_id)
            if target is None:
                raise validation_failed([f"The target twin {target_id} of the relationship does not exist."], "relationship")
            wanted = c.element.get("target")
            if wanted is not None and wanted not in dtdl.ancestors(target["$metadata"]["$model"], models):
                raise validation_failed(
                    [
                        f"The relationship '{name}' of {source_model} must target twins of the model {wanted}; the "
                        f"twin {target_id} has the model {target['$metadata']['$model']}."
                    ]
                )
            max_mult = c.element.get("maxMultiplicity")
            if isinstance(max_mult, int):
                count = sum(
                    1 for (src, rid), r in self.relationships.items() if src == source_id and rid != rel_id and r["$relationshipName"] == name
                )
                if count + 1 > max_mult:
                    raise validation_failed([f"The relationship '{name}' allows at most {max_mult} instance(s) per source twin."], "relationship")
            props = {k: copy.deepcopy(v) for k, v in body.items() if not k.startswith("$")}
            problems = _check_rel_props(c, props, models)
            if problems:
                raise validation_failed(problems, "relationship")
            rel: dict[str, Any] = {
                "$relationshipId": rel_id,
                "$etag": _new_etag(),
                "$sourceId": source_id,
                "$relationshipName": name,
                "$targetId": target_id,
            }
            rel.update(props)
            self.relationships[(source_id, rel_id)] = rel
            return copy.deepcopy(rel)

    def get_relationship(self, source_id: str, rel_id: str) -> dict[str, Any]:
        with self.lock:
            if source_id not in self.twins:
                raise twin_not_found(source_id)
            rel = self.relationships.get((source_id, rel_id))
            if rel is None:
                raise relationship_not_found(source_id, rel_id)
            return copy.deepcopy(rel)

    def patch_relationship(self, source_id: str, rel_id: str, patch: Any, if_match: str | None) -> str:
        with self.lock:
            self.admit_write(source_id)
            rel = self.get_relationship(source_id, rel_id)
            if not _match(if_match, rel["$etag"]):
                raise precondition_failed(
                    f"If-Match header value {if_match} does not match the current ETag of the relationship {rel_id}."
                )
            ops = _check_patch_ops(patch)
            for op in ops:
                parts = _pointer(op["path"])
                if any(p.startswith("$") for p in parts):
                    raise patch_invalid(f"Could not resolve path {op['path']}: system properties cannot be patched.")
                _apply_op(rel, op, parts, "")
            models = self.parsed_models()
            source_model = self.twins[source_id]["$metadata"]["$model"]
            c = dtdl.resolve_contents(source_model, models)[rel["$relationshipName"]]
            problems = _check_rel_props(c, {k: v for k, v in rel.items() if not k.startswith("$")}, models)
            if problems:
                raise validation_failed(problems, "relationship")
            rel["$etag"] = _new_etag()
            self.relationships[(source_id, rel_id)] = rel
            return str(rel["$etag"])

    def delete_relationship(self, source_id: str, rel_id: str, if_match: str | None) -> None:
        with self.lock:
            self.admit_write(source_id)
            rel = self.get_relationship(source_id, rel_id)
            if not _match(if_match, rel["$etag"]):
                raise precondition_failed(
                    f"If-Match header value {if_match} does not match the current ETag of the relationship {rel_id}."
                )
            del self.relationships[(source_id, rel_id)]

    def list_relationships(self, source_id: str, name: str | None) -> list[dict[str, Any]]:
        with self.lock:
            if source_id not in self.twins:
                raise twin_not_found(source_id)
            return [
                copy.deepcopy(r)
                for (src, _), r in self.relationships.items()
                if src == source_id and (name is None or r["$relationshipName"] == name)
            ]

    def list_incoming(self, target_id: str) -> list[dict[str, Any]]:
        with self.lock:
            if target_id not in self.twins:
                raise twin_not_found(target_id)
            return [
                {
                    "$relationshipId": r["$relationshipId"],
                    "$sourceId": r["$sourceId"],
                    "$relationshipName": r["$relationshipName"],
                    "$relationshipLink": f"/digitaltwins/{r['$sourceId']}/relationships/{r['$relationshipId']}",
                }
                for r in self.relationships.values()
                if r["$targetId"] == target_id
            ]

    # --- telemetry and query -------------------------------------------------------------------

    def publish_telemetry(self, twin_id: str, component: str | None, message_id: str | None, source_time: str | None, data: Any) -> None:
        if not message_id:
            raise AdtError(400, "InvalidArgument", "The 'Message-Id' header is required to publish telemetry.")
        with self.lock:
            if twin_id not in self.twins:
                raise twin_not_found(twin_id)
            if component is not None:
                self.get_component(twin_id, component)
            self.telemetry.append(
                {
                    "twin_id": twin_id,
                    "component": component,
                    "message_id": message_id,
                    "source_time": source_time,
                    "data": data,
                    "received": _now_iso(),
                }
            )

    def query(self, text: Any, continuation: str | None, page_size: int | None) -> tuple[list[Any], str | None]:
        if not isinstance(text, str):
            raise AdtError(400, "BadRequest", "The request body must be {\"query\": \"...\"}.")
        try:
            q = parse_query(text)
        except QueryError as exc:
            raise AdtError(400, "SqlQueryError", str(exc)) from exc
        size = QUERY_PAGE_SIZE if page_size is None else max(1, min(page_size, QUERY_PAGE_SIZE))
        offset = 0
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        if continuation:
            try:
                state = json.loads(base64.urlsafe_b64decode(continuation.encode()))
                offset = int(state["o"])
                if state["q"] != digest or offset < 0:
                    raise ValueError(continuation)
            except (ValueError, KeyError, TypeError) as exc:
                raise AdtError(400, "BadRequest", "The continuation token is invalid.") from exc
        with self.lock:
            if q.collection == "DIGITALTWINS":
                items = [copy.deepcopy(t) for t in self.twins.values()]
            else:
                items = [copy.deepcopy(r) for r in self.relationships.values()]
            rows = q.run(items, self.is_of_model)
        page = rows[offset : offset + size]
        token = None
        if offset + size < len(rows):
            token = base64.urlsafe_b64encode(json.dumps({"q": digest, "o": offset + size}).encode()).decode()
        return page, token


def _sub_changed(changed: set[str], component: str) -> set[str]:
    return {c.split("/", 1)[1] for c in changed if c.startswith(component + "/")}


def _strip_component_metadata(twin: dict[str, Any], keep: bool = False) -> None:
    """Components carry `$metadata` (an object); make sure it is one, dropping client-sent junk."""
    for key, value in twin.items():
        if key.startswith("$") or not isinstance(value, dict) or "$metadata" not in value:
            continue
        if not keep or not isinstance(value["$metadata"], dict):
            value["$metadata"] = {}


def _is_source_time_path(parts: list[str]) -> bool:
    """`/$metadata/<prop>/sourceTime`, or `/<component>/$metadata/<prop>/sourceTime`."""
    tail = parts[-3:]
    return (
        len(parts) in (3, 4)
        and tail[0] == "$metadata"
        and tail[2] == "sourceTime"
        and not tail[1].startswith("$")
        and not (len(parts) == 4 and parts[0].startswith("$"))
    )


def _check_source_time(value: Any, where: str) -> str:
    """ADT requires an ISO 8601 date and time (with its offset) for a property's sourceTime."""
    text = value if isinstance(value, str) else ""
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        moment = None
    if moment is None or "T" not in text.upper() or moment.tzinfo is None:
        raise validation_failed([f"'{where}': {value!r} is not an ISO 8601 date and time with a UTC offset or Z."])
    return text


def _apply_source_time(target: dict[str, Any], op: dict[str, Any], parts: list[str], prefix: str) -> None:
    """Set (add/replace, whether or not a sourceTime exists yet) or remove `$metadata.<prop>.sourceTime`."""
    where = prefix + op["path"]
    container: Any = target
    if len(parts) == 4:
        container = target.get(parts[0])
        if not isinstance(container, dict) or "$metadata" not in container:
            raise patch_invalid(f"Could not resolve path {where}: {parts[0]} is not a component of the twin.")
    prop = parts[-2]
    meta = container.get("$metadata")
    entry = meta.get(prop) if isinstance(meta, dict) else None
    if prop not in container or not isinstance(entry, dict):
        raise patch_invalid(
            f"Could not resolve path {where}: the property {prop} has no value, so it has no sourceTime to set."
        )
    if op["op"] == "remove":
        if "sourceTime" not in entry:
            raise patch_invalid(f"sourceTime does not exist on the property {prop}.")
        del entry["sourceTime"]
        return
    entry["sourceTime"] = _check_source_time(op["value"], where)


def _source_times_from_body(twin: dict[str, Any], body: dict[str, Any]) -> None:
    """A created/replaced twin may carry `$metadata.<prop>.sourceTime` (top level and components)."""
    for container, sent in [(twin, body), *((twin[k], body.get(k)) for k in twin if not k.startswith("$")
                                             and isinstance(twin[k], dict) and "$metadata" in twin[k])]:
        sent_meta = sent.get("$metadata") if isinstance(sent, dict) else None
        if not isinstance(sent_meta, dict):
            continue
        for prop, entry in sent_meta.items():
            if prop.startswith("$") or not isinstance(entry, dict) or "sourceTime" not in entry:
                continue
            meta = container["$metadata"].get(prop)
            if prop not in container or not isinstance(meta, dict):
                raise validation_failed([f"'/$metadata/{prop}/sourceTime': the property {prop} has no value."])
            meta["sourceTime"] = _check_source_time(entry["sourceTime"], f"/$metadata/{prop}/sourceTime")


def _check_patch_ops(patch: Any) -> list[dict[str, Any]]:
    if not isinstance(patch, list):
        raise patch_invalid("The patch document must be a JSON array of operations.")
    for op in patch:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str) or not isinstance(op.get("op"), str):
            raise patch_invalid("Every patch operation needs 'op' and 'path'.")
        if op["op"] not in ("add", "replace", "remove"):
            raise patch_invalid(f"Unsupported operation type {op['op']}.")
        if op["op"] != "remove" and "value" not in op:
            raise patch_invalid(f"The {op['op']} operation on {op['path']} has no 'value'.")
    return patch


def _pointer(path: str) -> list[str]:
    if not path.startswith("/") or path == "/":
        raise patch_invalid(f"Could not resolve path {path}.")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_op(doc: dict[str, Any], op: dict[str, Any], parts: list[str], prefix: str) -> None:
    parent: Any = doc
    for i, part in enumerate(parts[:-1]):
        if not isinstance(parent, dict) or part not in parent:
            raise patch_invalid(f"Could not resolve path {prefix}/{'/'.join(parts[: i + 1])}.")
        parent = parent[part]
    last = parts[-1]
    if not isinstance(parent, dict):
        raise patch_invalid(f"Could not resolve path {prefix}/{'/'.join(parts)}.")
    if op["op"] in ("replace", "remove") and last not in parent:
        where = "component" if prefix or len(parts) == 1 else "object"
        raise patch_invalid(f"{last} does not exist on {where}.")
    if op["op"] == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(op["value"])


def _check_rel_props(c: dtdl.Content, props: dict[str, Any], models: dict[str, dtdl.ParsedModel]) -> list[str]:
    declared = {p["name"]: p for p in c.element.get("properties", []) if isinstance(p, dict)}
    named = dtdl.named_schemas(c.defined_in, models)
    problems: list[str] = []
    for key, value in props.items():
        p = declared.get(key)
        if p is None:
            problems.append(f"'{key}' is not a property of the relationship '{c.name}'.")
        else:
            problems.extend(dtdl.check_value(p.get("schema"), value, f"/{key}", named))
    return problems


class DigitalTwinsBackend:
    """All instances of one sandbox, and the ARM hooks that create and drop them."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._by_key: dict[str, Instance] = {}
        self._by_resource: dict[str, Instance] = {}
        self._serial: dict[str, int] = {}

    # --- ARM hooks -----------------------------------------------------------------------------

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        rid = resource_id.rstrip("/")
        with self._lock:
            inst = self._by_resource.get(rid.lower())
            if inst is None:
                name = rid.rsplit("/", 1)[-1]
                # A recreated instance gets a new host name, as in Azure (<name>-<n>, n counting up).
                n = self._serial.get(name.lower(), 0) + 1
                self._serial[name.lower()] = n
                inst = Instance(name=name, resource_id=rid, host_key=f"{name.lower()}-{n}")
                self._by_key[inst.host_key] = inst
                self._by_resource[rid.lower()] = inst
        props = resource.setdefault("properties", {})
        if isinstance(props, dict):
            props["hostName"] = self.host_name(inst)

    def on_delete(self, resource_id: str) -> None:
        with self._lock:
            inst = self._by_resource.pop(resource_id.rstrip("/").lower(), None)
            if inst is not None:
                self._by_key.pop(inst.host_key, None)

    # --- lookups -------------------------------------------------------------------------------

    def host_name(self, inst: Instance) -> str:
        base = self.ctx.azure_base_url
        authority = base.split("://", 1)[-1].rstrip("/") if base else "127.0.0.1"
        return f"{authority}{URL_PREFIX}/{inst.host_key}"

    def endpoint(self, resource_id: str) -> str:
        """`https://` + hostName of the instance with this ARM id (for tests and tools)."""
        inst = self.instance_for_resource(resource_id)
        if inst is None:
            raise KeyError(f"no Digital Twins instance {resource_id}")
        return "https://" + self.host_name(inst)

    def instance(self, host_key: str) -> Instance | None:
        with self._lock:
            return self._by_key.get(host_key.lower())

    def instance_for_resource(self, resource_id: str) -> Instance | None:
        with self._lock:
            return self._by_resource.get(resource_id.rstrip("/").lower())

    def instances(self) -> list[Instance]:
        with self._lock:
            return list(self._by_key.values())

    def reset(self) -> None:
        """Drop every instance (the control endpoint's reset). Serial numbers keep counting."""
        with self._lock:
            self._by_key.clear()
            self._by_resource.clear()
