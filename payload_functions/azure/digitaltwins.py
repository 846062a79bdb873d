"""Patching twins through azure-digitaltwins-core with the app's managed identity.

The SDKs are imported inside the functions (never at module import) so an app starts fast and a
missing package shows up as a clear error on the first call only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payload_functions.common.adt import build_patch, declared_properties, extended_models
from payload_functions.common.errors import NotReady, UpstreamError
from payload_functions.common.settings import Settings
from shared.contracts import Setting

ADT_READS = frozenset({Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID})


@dataclass
class PatchOutcome:
    twin_id: str
    patched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"twin_id": self.twin_id, "patched": self.patched, "skipped": self.skipped}


def _client(settings: Settings) -> Any:
    url = settings.optional(Setting.ADT_INSTANCE_URL)
    if url is None:
        raise NotReady(f"setting {Setting.ADT_INSTANCE_URL} is not configured yet; deploy the twins layer (L4) first")
    from azure.digitaltwins.core import DigitalTwinsClient
    from azure.identity import ManagedIdentityCredential

    client_id = settings.optional(Setting.AZURE_CLIENT_ID)
    # The user-assigned identity holds the Digital Twins Data Owner role (seed lesson 4).
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DigitalTwinsClient(url, credential)


class TwinPatcher:
    """One client per function invocation; caches each model's declared properties."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._props: dict[str, set[str]] = {}

    def client(self) -> Any:
        if self._client is None:
            self._client = _client(self.settings)
        return self._client

    def _model_properties(self, model_id: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if model_id in self._props:
            return self._props[model_id]
        model = self.client().get_model(model_id, include_model_definition=True)
        definition = model.model if hasattr(model, "model") else model.get("model", {})
        props = declared_properties(definition or {})
        for parent in extended_models(definition or {}):
            if parent not in seen:
                props |= self._model_properties(parent, seen | {model_id})
        self._props[model_id] = props
        return props

    def patch(self, twin_id: str, values: Mapping[str, Any]) -> PatchOutcome:
        """One `update_digital_twin` per reading with `add` ops on the declared `lastX` properties."""
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            twin = self.client().get_digital_twin(twin_id)
            model_id = (twin.get("$metadata") or {}).get("$model")
            if not isinstance(model_id, str):
                raise UpstreamError(f"twin {twin_id} has no $metadata.$model")
            ops, skipped = build_patch(values, self._model_properties(model_id))
            if ops:
                self.client().update_digital_twin(twin_id, ops)
        except HttpResponseError as exc:
            code = getattr(exc.error, "code", None) if exc.error else None
            raise UpstreamError(
                f"Digital Twins answered {exc.status_code}{f' ({code})' if code else ''} for twin {twin_id}"
            ) from None
        except AzureError as exc:
            raise UpstreamError(f"Digital Twins call for twin {twin_id} failed: {type(exc).__name__}") from None
        return PatchOutcome(twin_id, [op["path"][1:] for op in ops], skipped)
