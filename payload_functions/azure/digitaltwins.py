"""Patching twins through azure-digitaltwins-core with the app's managed identity.

Every twin write of this app (ADT Pusher, ADT Updater, Azure persister) goes through
`TwinPatcher.patch`, which:

- coalesces concurrent readings for the same twin in this process into one patch, paced under
  ADT's 10 writes/s per twin (`payload_functions.common.twin_writes`);
- writes each value with the reading's timestamp as the property's `sourceTime`, and leaves out
  properties whose `sourceTime` on the twin is already as new, so an older reading never
  overwrites a newer one;
- writes conditionally on the twin's ETag (`If-Match`): if another process wrote the twin since
  it was read (412), it re-reads and recomputes, a bounded number of times;
- lets the SDK's retry policy retry a 429 after its `Retry-After` (bounded by `RETRIES`).

The SDKs are imported inside the functions (never at module import) so an app starts fast and a
missing package shows up as a clear error on the first call only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payload_functions.common.adt import TimedPatch, build_timed_patch, declared_properties, extended_models
from payload_functions.common.errors import NotReady, UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.common.telemetry import now_timestamp
from payload_functions.common.twin_writes import Stamped, TwinWriteCoalescer, WriteTimeout, instant
from shared.contracts import Setting, adt_property_name

ADT_READS = frozenset({Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID})

RETRIES = 5
"""SDK retries per call: 429 after its Retry-After (at least 1 s), 408/5xx with backoff."""
RETRY_BACKOFF_MAX = 8.0
CONFLICT_ATTEMPTS = 5
"""Conditional writes per batch before giving up when other writers keep changing the twin (412)."""
MODEL_CACHE_SECONDS = 300.0
"""A model's declared properties are reused this long (models are immutable once uploaded; a
deleted and re-uploaded model id is picked up after this)."""


@dataclass
class PatchOutcome:
    """One caller's reading against the twin: `patched` (ADT property names written with this
    reading's value), `stale` (property names the twin already held a value at least as new for,
    from an earlier or a concurrent reading), `skipped` (telemetry the model does not declare)."""

    twin_id: str
    patched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"twin_id": self.twin_id, "patched": self.patched, "skipped": self.skipped, "stale": self.stale}


def outcome_for(twin_id: str, values: Mapping[str, Any], timestamp: str, batch: TimedPatch) -> PatchOutcome:
    """This caller's part of a batch's result (the batch may hold newer values than its own)."""
    out = PatchOutcome(twin_id)
    mine = instant(timestamp)
    for name in sorted(values):
        if name in batch.skipped:
            out.skipped.append(name)
        elif name in batch.written and instant(batch.written[name]) == mine:
            out.patched.append(adt_property_name(name))
        else:
            out.stale.append(adt_property_name(name))
    return out


# One per process: the local host and Azure's Python worker run sync functions on a thread pool,
# so concurrent invocations for one twin meet here.
COALESCER: TwinWriteCoalescer[TimedPatch] = TwinWriteCoalescer()

_clients_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}
_models_lock = threading.Lock()
_models: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}


def _client(settings: Settings) -> Any:
    """The process's client for this instance and identity: SDK clients are thread-safe, and a
    shared one reuses its connections and its cached token across invocations."""
    url = _instance_url(settings)
    client_id = settings.optional(Setting.AZURE_CLIENT_ID)
    with _clients_lock:
        client = _clients.get((url, client_id))
        if client is not None:
            return client
        from azure.digitaltwins.core import DigitalTwinsClient
        from azure.identity import ManagedIdentityCredential

        # The user-assigned identity holds the Digital Twins Data Owner role (seed lesson 4).
        credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
        client = DigitalTwinsClient(url, credential, retry_total=RETRIES, retry_backoff_max=RETRY_BACKOFF_MAX)
        _clients[(url, client_id)] = client
        return client


def _instance_url(settings: Settings) -> str:
    url = settings.optional(Setting.ADT_INSTANCE_URL)
    if url is None:
        raise NotReady(f"setting {Setting.ADT_INSTANCE_URL} is not configured yet; deploy the twins layer (L4) first")
    return url


def _upstream(exc: Exception, twin_id: str) -> UpstreamError:
    """A clear error without the SDK's message (it may echo request details)."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        code = getattr(exc.error, "code", None) if exc.error else None
        return UpstreamError(f"Digital Twins answered {exc.status_code}{f' ({code})' if code else ''} for twin {twin_id}")
    return UpstreamError(f"Digital Twins call for twin {twin_id} failed: {type(exc).__name__}")


class TwinPatcher:
    """Per invocation; the client (per instance URL and identity) and the coalescer are shared
    by the process."""

    def __init__(self, settings: Settings, coalescer: TwinWriteCoalescer[TimedPatch] | None = None) -> None:
        self.settings = settings
        self.coalescer = COALESCER if coalescer is None else coalescer
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client = _client(self.settings)
        return self._client

    def _model_properties(self, model_id: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        key = (_instance_url(self.settings), model_id)
        now = time.monotonic()
        with _models_lock:
            cached = _models.get(key)
        if cached is not None and now - cached[0] < MODEL_CACHE_SECONDS:
            return cached[1]
        model = self.client().get_model(model_id, include_model_definition=True)
        definition = model.model if hasattr(model, "model") else model.get("model", {})
        props = set(declared_properties(definition or {}))
        for parent in extended_models(definition or {}):
            if parent not in seen:
                props |= self._model_properties(parent, seen | {model_id})
        with _models_lock:
            _models[key] = (now, frozenset(props))
        return frozenset(props)

    def patch(self, twin_id: str, values: Mapping[str, Any], timestamp: str | None = None) -> PatchOutcome:
        """Write one reading's values (observed at `timestamp`, ISO 8601; the arrival time when
        not given) to the twin's `lastX` properties, unless the twin already holds newer ones.
        Returns once a write carrying this reading (or newer values) has finished."""
        stamp = timestamp or now_timestamp()
        key = (_instance_url(self.settings), twin_id)
        try:
            batch = self.coalescer.submit(key, values, stamp, lambda b, pace: self._write(twin_id, b, pace))
        except WriteTimeout as exc:
            raise UpstreamError(f"Digital Twins write for twin {twin_id} did not finish: {exc}") from None
        return outcome_for(twin_id, values, stamp, batch)

    def _write(self, twin_id: str, batch: Mapping[str, Stamped], pace: Callable[[], None]) -> TimedPatch:
        """Read the twin, drop what is not newer, write the rest if the twin is unchanged since."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, HttpResponseError

        for _ in range(CONFLICT_ATTEMPTS):
            try:
                twin = self.client().get_digital_twin(twin_id)
                metadata = twin.get("$metadata") or {}
                model_id = metadata.get("$model")
                if not isinstance(model_id, str):
                    raise UpstreamError(f"twin {twin_id} has no $metadata.$model")
                plan = build_timed_patch(batch, self._model_properties(model_id), metadata)
                if not plan.ops:
                    return plan
                pace()
                etag = twin.get("$etag")
                if isinstance(etag, str) and etag:
                    self.client().update_digital_twin(
                        twin_id, plan.ops, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                else:  # a twin is always served with its $etag; without one, write as before
                    self.client().update_digital_twin(twin_id, plan.ops)
                return plan
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue  # another writer changed the twin since it was read: re-read, recompute
                raise _upstream(exc, twin_id) from None
            except AzureError as exc:
                raise _upstream(exc, twin_id) from None
        raise UpstreamError(
            f"twin {twin_id} kept changing while it was written: {CONFLICT_ATTEMPTS} conditional writes were "
            "refused (412 Precondition Failed)"
        )
