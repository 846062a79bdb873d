"""L4: the DTDL models of the twin's hierarchy, uploaded as given, in dependency order (a model's
`extends`, components and relationship targets first), in calls of at most 250 models (the
service's per-call limit). Models are immutable: an existing model with the same id is compared,
and a different definition under an existing id is refused (bump the model's version)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from activities.providers.azure._adt import data_client, data_plane, existing_client
from activities.providers.typed import TypedProvider, creating, to_create
from activities.registry import register
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall
from shared.resources.azure import DtdlModelsConfig

MAX_MODELS_PER_CALL = 250


def model_id(model: Mapping[str, Any]) -> str:
    mid = model.get("@id")
    if not isinstance(mid, str) or not mid.startswith("dtmi:"):
        raise PermanentError(f"a DTDL model has no valid '@id' (a dtmi): {json.dumps(model)[:120]}")
    return mid


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith("dtmi:") else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.startswith("dtmi:")]
    return []


def dependencies(model: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(hard, soft) model ids `model` refers to: `extends` and component schemas must exist first;
    relationship targets may also come in the same upload (cycles between targets are legal)."""
    hard = set(_refs(model.get("extends")))
    soft: set[str] = set()
    contents = model.get("contents") or []
    for item in contents if isinstance(contents, list) else []:
        if not isinstance(item, dict):
            continue
        raw_type = item.get("@type")
        types = [raw_type] if isinstance(raw_type, str) else list(raw_type or [])
        if "Component" in types:
            hard |= set(_refs(item.get("schema")))
        if "Relationship" in types:
            soft |= set(_refs(item.get("target")))
    return hard, soft - hard


def upload_order(models: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Models sorted so each one's dependencies come before it (stable; cycles of relationship
    targets keep their given order). A missing or cyclic `extends`/component is refused."""
    by_id = {model_id(m): m for m in models}
    deps = {mid: dependencies(m) for mid, m in by_id.items()}
    done: set[str] = set()
    order: list[str] = []
    remaining = list(by_id)
    while remaining:
        ready = [mid for mid in remaining
                 if all(d in done or d not in by_id for d in deps[mid][0] | deps[mid][1])]
        if not ready:
            # Only soft cycles may be broken: take the first whose hard dependencies are met.
            ready = [next((mid for mid in remaining if all(d in done or d not in by_id for d in deps[mid][0])), "")]
            if not ready[0]:
                raise PermanentError(
                    "DTDL models extend each other in a cycle: " + ", ".join(sorted(remaining)[:5])
                )
        for mid in ready[:1]:
            order.append(mid)
            done.add(mid)
            remaining.remove(mid)
    return [by_id[mid] for mid in order]


def chunks(models: Sequence[Mapping[str, Any]], size: int = MAX_MODELS_PER_CALL) -> list[list[Mapping[str, Any]]]:
    return [list(models[i:i + size]) for i in range(0, len(models), size)]


def _canonical(model: Any) -> str:
    return json.dumps(model, sort_keys=True, separators=(",", ":"))


def _compare(models: Sequence[Mapping[str, Any]], have: dict[str, Any]) -> None:
    for m in models:
        mid = model_id(m)
        if mid in have and have[mid] is not None and _canonical(have[mid]) != _canonical(m):
            raise PermanentError(
                f"model {mid} already exists with another definition; DTDL models are immutable: give the "
                "changed model a new version (…;2) and point the twins at it"
            )


def existing_models(client: Any) -> dict[str, Any]:
    listed = data_plane("list models", lambda: list(client.list_models(include_model_definition=True)))
    return {str(m.id): m.model for m in listed}


@register("azure", "dtdl-models")
class DtdlModels(TypedProvider[DtdlModelsConfig]):
    model = DtdlModelsConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        models = upload_order(config.models)
        client = data_client(call, config)
        have = existing_models(client)
        _compare(models, have)
        missing = [m for m in models if model_id(m) not in have]
        if missing and len(missing) == len(models) and not creating(call):
            return to_create(f"DTDL models of {config.instance} are being uploaded")
        for chunk in chunks(missing):
            try:
                data_plane("upload models", lambda c=chunk: client.create_models(c))  # type: ignore[misc]
            except ResourceExistsError:
                # 409 ModelIdAlreadyExists: someone uploaded some of them meanwhile. Already done,
                # if they are the same: compare, then upload what is still missing of this chunk.
                have = existing_models(client)
                _compare(chunk, have)
                rest = [m for m in chunk if model_id(m) not in have]
                if rest:
                    data_plane("upload models", lambda c=rest: client.create_models(c))  # type: ignore[misc]
        if creating(call):
            return EnsureResult("created")
        action: Action = "unchanged" if not missing else "updated"
        return EnsureResult(action)

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self.ensure(call)  # only the upload `ensure` decided on is polled

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        wanted = [model_id(m) for m in config.models]
        client = existing_client(call, config)
        if client is None:
            return ReadResult(False)
        have = existing_models(client)
        present = [mid for mid in wanted if mid in have]
        return ReadResult(len(present) == len(wanted), details={"present": present,
                                                                 "missing": [m for m in wanted if m not in have]})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        client = existing_client(call, config)
        if client is None:
            return EnsureResult("absent")  # the instance is gone, and its models with it
        deleted = 0
        # Dependents first: the reverse of the upload order.
        for m in reversed(upload_order(config.models)):
            try:
                data_plane("delete a model", lambda mid=model_id(m): client.delete_model(mid))  # type: ignore[misc]
                deleted += 1
            except ResourceNotFoundError:
                continue
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    continue
                if exc.status_code == 409:
                    raise TransientError(f"model {model_id(m)} is still referenced (twins or models)") from exc
                raise
        return EnsureResult("deleted" if deleted else "absent")
