"""The provider interface and the registry that maps (provider, kind) to an implementation.

A provider module registers its classes at import time with `@register("azure", "function-app")`.
Which modules are imported comes from the app setting `TWIN_PROVIDER_MODULES` (comma-separated
module names; default: the real providers `control`, `azure`, `aws` and `gcp`), so tests can
load providers kept under `tests/` without touching the deployed code.

Contract of every operation (all may run more than once; none blocks on a slow cloud operation):
- `ensure(call)`: create or reconcile to `call.resource.config` and apply the wired
  `call.settings` known now (read-modify-write, keeping settings set by others); returns
  `EnsureResult` with the action and outputs, or with `pending` for a long operation (then
  `poll` is called later).
- `poll(call)`: `call.pending` is what `ensure`/`delete` returned; returns done or still pending.
- `read(call)`: what exists now (for status and convergence checks).
- `delete(call)`: remove; returns `deleted`, `absent` (already gone: not an error) or pending.
- `apply_settings(call)`: a consumer's read-modify-write of the wired `call.settings` (value None
  removes the setting); returns True only if it wrote (a consumer already current is untouched).
Errors: raise `TransientError`/`PermanentError`, or let SDK errors through (they get classified).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError
from shared.engine.types import EnsureResult, Pending, ReadResult, ResourceCall

# Alias kept for the AWS provider tests, which import it by this name.
PROVIDER_MODULES_SETTING = ControlPlaneSetting.PROVIDER_MODULES
DEFAULT_PROVIDER_MODULES = ("activities.providers.control,activities.providers.azure,activities.providers.aws,"
                            "activities.providers.gcp")
ANY = "*"


class Provider:
    """Base class of a resource kind's implementation. Override what the kind supports."""

    def ensure(self, call: ResourceCall) -> EnsureResult:
        raise PermanentError(f"{type(self).__name__} cannot create {call.resource.kind} resources")

    def poll(self, call: ResourceCall) -> EnsureResult:
        raise PermanentError(f"{type(self).__name__} has no long operations to poll")

    def read(self, call: ResourceCall) -> ReadResult:
        raise PermanentError(f"{type(self).__name__} cannot read {call.resource.kind} resources")

    def delete(self, call: ResourceCall) -> EnsureResult:
        raise PermanentError(f"{type(self).__name__} cannot delete {call.resource.kind} resources")

    def apply_settings(self, call: ResourceCall) -> bool | Pending:
        """Read-modify-write the consumer's wired settings: whether it wrote, or a `Pending` while
        the cloud still rolls the written settings out (then called again with `call.pending`)."""
        raise PermanentError(f"{call.resource.kind} resources take no settings, yet the plan wires some to them")


P = TypeVar("P", bound=type[Provider])

# (provider, kind) -> {defining module: implementation}. Several modules may register the same key
# in one process (tests load fakes beside the real providers); lookups only consider the modules
# that the configuration names, so what serves a kind never depends on import order.
_registry: dict[tuple[str, str], dict[str, Provider]] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def register(provider: str, kind: str) -> Callable[[P], P]:
    """Class decorator: `@register("aws", "lambda")`; `kind="*"` serves every kind of that provider."""

    def decorate(cls: P) -> P:
        _registry.setdefault((provider, kind), {})[cls.__module__] = cls()
        return cls

    return decorate


def configured_modules(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    raw = env.get(PROVIDER_MODULES_SETTING) or DEFAULT_PROVIDER_MODULES
    return [name.strip() for name in raw.split(",") if name.strip()]


def load_providers(environ: dict[str, str] | None = None) -> None:
    """Import the configured provider modules once each (importing registers them)."""
    for name in configured_modules(environ):
        if name in _loaded:
            continue
        with _lock:
            if name not in _loaded:
                try:
                    importlib.import_module(name)
                except ImportError as exc:
                    raise PermanentError(
                        f"provider module {name!r} from {PROVIDER_MODULES_SETTING} cannot be imported: {exc}"
                    ) from exc
                _loaded.add(name)


def _configured(module: str, configured: list[str]) -> bool:
    """A registration counts when its module is a configured module or inside a configured package."""
    return any(module == name or module.startswith(name + ".") for name in configured)


def _lookup(provider: str, kind: str) -> Provider | None:
    load_providers()
    configured = configured_modules()
    for key in ((provider, kind), (provider, ANY), (ANY, ANY)):
        candidates = [impl for module, impl in _registry.get(key, {}).items() if _configured(module, configured)]
        if candidates:
            return candidates[-1]
    return None


def provider_for(provider: str, kind: str) -> Provider:
    """The implementation for (provider, kind); a clear permanent error when there is none."""
    impl = _lookup(provider, kind)
    if impl is not None:
        return impl
    configured = configured_modules()
    known = ", ".join(
        sorted(f"{p}/{k}" for (p, k), impls in _registry.items() if any(_configured(m, configured) for m in impls))
    ) or "none"
    raise PermanentError(
        f"no provider implements {provider}/{kind} (loaded modules: {', '.join(configured)}; registered: {known})"
    )


def has_provider(provider: str, kind: str) -> bool:
    """True when (provider, kind) has an implementation among the configured modules."""
    return _lookup(provider, kind) is not None
