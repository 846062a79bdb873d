"""Resources the control plane produces itself: generated secrets such as the inter-cloud token."""

from __future__ import annotations

import hashlib
import secrets

from activities.providers.typed import TypedProvider, creating, to_create
from activities.registry import register
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall
from shared.resources.control import GeneratedSecretConfig

TOKEN_BYTES = 32
PREVIOUS_SUFFIX = "_PREVIOUS"


def fingerprint(secret: str) -> str:
    """SHA-256 of a secret: stored where the secret itself cannot be read back (a Grafana secure
    field), so a reconcile can tell whether the secret changed without keeping it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(size: int = TOKEN_BYTES) -> str:
    """A URL-safe random secret of `size` bytes (256 bits by default), fit for an HTTP header."""
    return secrets.token_urlsafe(size)


@register("control", "secret")
class GeneratedSecret(TypedProvider[GeneratedSecretConfig]):
    """Each produced output is a random secret; an existing value is kept (reconcile, not rotate).

    Rotation is a separate, phased operation (`rotate_token`), never a side effect of a re-deploy.
    """

    model = GeneratedSecretConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        fresh = [n for n in call.resource.produces if not n.endswith(PREVIOUS_SUFFIX)]
        if fresh and not any(call.current.get(n) for n in fresh) and not creating(call):
            # Decided before generating (`to_create`): a value kept in the vault by an attempt
            # killed after storing it is then reported as the `created` secret it is.
            return to_create(f"secret {config.name} is being generated")
        outputs: dict[str, str] = {}
        generated = 0
        for name in call.resource.produces:
            current = call.current.get(name)
            if name.endswith(PREVIOUS_SUFFIX):
                # The previous token exists only during a rotation; at rest it is empty.
                outputs[name] = current or ""
            elif current:
                outputs[name] = current
            else:
                outputs[name] = new_secret(config.bytes)
                generated += 1
        action: Action = "unchanged" if not generated else ("created" if generated == len(fresh) else "updated")
        return EnsureResult(action="created" if creating(call) else action, outputs=outputs)

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self.ensure(call)  # the generation `ensure` decided on

    def read(self, call: ResourceCall) -> ReadResult:
        present = all(call.current.get(name) for name in call.resource.produces)
        return ReadResult(exists=present, outputs={k: v for k, v in call.current.items() if k in call.resource.produces})

    def delete(self, call: ResourceCall) -> EnsureResult:
        # The value lives only in the twin's state, which destroy clears.
        return EnsureResult(action="deleted" if call.current else "absent")
