"""Secret outputs by reference: the value lives in the control plane's Key Vault, Durable state
holds `keyvault:<secret name>/<version>`.

Everything an activity takes or returns is written to Durable's history, and the `twin_state`
entity keeps outputs, so without this the inter-cloud token, connection strings and device
credentials could be read back through Durable's management API (`showHistory`, entity state).
With `TWIN_KEY_VAULT_URL` set, the activity boundary (`activities/blueprint.py`) resolves
references in a call's settings and current outputs before a provider sees them, and turns the
secret outputs a provider returns into references. A value equal to the one already referenced
keeps its reference (no new version), so a re-run writes nothing and versions only move on change.
A reference names its version, so it is immutable and resolutions are cached per process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from activities.clouds import Clouds, clouds_from_environ
from shared.contracts import ControlPlaneSetting, is_secret_output
from shared.engine.errors import PermanentError, classify

log = logging.getLogger("activities.secrets")
REF_PREFIX = "keyvault:"
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z-]+")
CACHE_SIZE = 512


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REF_PREFIX)


def secret_name(twin: str, output: str) -> str:
    """A Key Vault secret name (1-127 of `[0-9A-Za-z-]`) for one twin output; the hash keeps two
    names that squash alike (`a_b` / `a-b`) apart."""
    digest = hashlib.sha256(f"{twin}/{output}".encode()).hexdigest()[:10]
    squashed = _NAME_UNSAFE.sub("-", f"{twin}-{output}").strip("-")[:100]
    return f"tw-{squashed}-{digest}"


class SecretStore:
    """The control plane's vault, through the real `azure-keyvault-secrets` client."""

    def __init__(self, clouds: Clouds, vault_url: str) -> None:
        self.vault_url = vault_url
        self._client = clouds.secret_client(vault_url)
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, twin: str, output: str, value: str) -> str:
        """Store a new version; returns its reference."""
        from azure.core.exceptions import HttpResponseError

        name = secret_name(twin, output)
        tags = {"twin": twin, "output": output[:200]}
        with _vault_call(f"storing output {output} in Key Vault"):
            try:
                secret = self._client.set_secret(name, value, tags=tags)
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise
                # Deleted (soft delete) but not purged, e.g. a twin destroyed and deployed again.
                self._client.begin_recover_deleted_secret(name).wait()
                secret = self._client.set_secret(name, value, tags=tags)
        ref = f"{REF_PREFIX}{name}/{secret.properties.version}"
        self._remember(ref, value)
        return ref

    def get(self, ref: str, missing_ok: bool = False) -> str | None:
        """The secret a reference names; with `missing_ok`, None when it is gone (deleted)."""
        from azure.core.exceptions import ResourceNotFoundError

        with self._lock:
            if ref in self._cache:
                self._cache.move_to_end(ref)
                return self._cache[ref]
        name, _, version = ref[len(REF_PREFIX):].partition("/")
        try:
            with _vault_call(f"reading secret {name} from Key Vault", missing_ok=missing_ok):
                value = self._client.get_secret(name, version or None).value
        except ResourceNotFoundError:
            return None
        if value is None:
            raise PermanentError(f"secret {name} version {version} in Key Vault has no value")
        self._remember(ref, value)
        return str(value)

    def latest(self, twin: str, output: str) -> tuple[str, str] | None:
        """(reference, value) of the latest version kept for a twin's output, or None. Lets a
        deploy whose control-plane state was lost keep the secrets the clouds already hold."""
        from azure.core.exceptions import ResourceNotFoundError

        name = secret_name(twin, output)
        try:
            with _vault_call(f"reading secret {name} from Key Vault", missing_ok=True):
                secret = self._client.get_secret(name)
        except ResourceNotFoundError:
            return None
        if secret.value is None:
            return None
        ref = f"{REF_PREFIX}{name}/{secret.properties.version}"
        self._remember(ref, str(secret.value))
        return ref, str(secret.value)

    def delete(self, twin: str, output: str) -> None:
        """Remove every version (destroy); a secret already gone is fine."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        name = secret_name(twin, output)
        try:
            self._client.begin_delete_secret(name).wait()
        except ResourceNotFoundError:
            return
        try:
            self._client.purge_deleted_secret(name)
        except HttpResponseError as exc:
            # Purge protection or no purge permission: the deleted secret expires by itself, and
            # `put` recovers it if the twin comes back first.
            log.warning("secret %s deleted but not purged (Key Vault answered %s)", name, exc.status_code)
        with self._lock:
            for ref in [r for r in self._cache if r.startswith(f"{REF_PREFIX}{name}/")]:
                del self._cache[ref]

    def _remember(self, ref: str, value: str) -> None:
        with self._lock:
            self._cache[ref] = value
            self._cache.move_to_end(ref)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)


@contextmanager
def _vault_call(what: str, missing_ok: bool = False) -> Iterator[None]:
    """Key Vault failures as provider errors (`shared.engine.errors.classify`), saying what was done.
    With `missing_ok`, a missing secret passes through for the caller to handle."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    try:
        yield
    except AzureError as exc:
        if missing_ok and isinstance(exc, ResourceNotFoundError):
            raise
        failure = classify(exc)
        raise type(failure)(f"{what}: {failure}") from None


_stores: dict[tuple[str, str], SecretStore] = {}
_stores_lock = threading.Lock()


def configured_store(environ: Mapping[str, str] | None = None) -> SecretStore | None:
    """The store named by `TWIN_KEY_VAULT_URL` (one per vault and sandbox), or None."""
    env = os.environ if environ is None else environ
    vault_url = (env.get(ControlPlaneSetting.KEY_VAULT_URL) or "").strip()
    if not vault_url:
        return None
    key = (vault_url, env.get(ControlPlaneSetting.SANDBOX_DIR, ""))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = SecretStore(clouds_from_environ(dict(env)), vault_url)
        return store


def resolve(values: Mapping[str, Any], store: SecretStore | None, missing_ok: bool = False) -> dict[str, Any]:
    """`values` with every reference replaced by its secret. With `missing_ok`, a reference to a
    secret already deleted is dropped (a delete retried after a crash that followed the secret's
    removal: the resource's own outputs are only a hint to it)."""
    if not any(is_ref(v) for v in values.values()):
        return dict(values)
    if store is None:
        raise PermanentError(f"a secret is held in Key Vault, but {ControlPlaneSetting.KEY_VAULT_URL} is not set")
    out: dict[str, Any] = {}
    for key, value in values.items():
        resolved = store.get(value, missing_ok) if is_ref(value) else value
        if resolved is not None:
            out[key] = resolved
    return out


def protect(twin: str, outputs: Mapping[str, str], current_refs: Mapping[str, str],
            current_values: Mapping[str, str], store: SecretStore | None) -> dict[str, str]:
    """Secret outputs as references (unchanged values keep the reference they have); others as is."""
    if store is None:
        return dict(outputs)
    protected: dict[str, str] = {}
    for name, value in outputs.items():
        if not value or not is_secret_output(name) or is_ref(value):
            protected[name] = value
        elif is_ref(current_refs.get(name)) and current_values.get(name) == value:
            protected[name] = current_refs[name]
        else:
            protected[name] = store.put(twin, name, value)
    return protected
