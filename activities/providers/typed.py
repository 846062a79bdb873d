"""Providers read their resource's configuration once, typed: `config_of(call, Model)` at the top
of an operation, then attributes. A configuration that does not fit its kind (a plan from another
version, a hand-made call) is a permanent error naming every JSON path, never a KeyError later."""

from __future__ import annotations

from typing import Generic

from activities.registry import Provider
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources import ConfigError, parse_config
from shared.resources.base import C


def config_of(call: ResourceCall, model: type[C]) -> C:
    """`call.resource.config` as `model`; a `PermanentError` with every problem's path otherwise."""
    try:
        return parse_config(call.resource.id, call.resource.config, model)
    except ConfigError as exc:
        raise PermanentError(str(exc)) from None


class TypedProvider(Provider, Generic[C]):
    """A provider whose kind's configuration is `model`."""

    model: type[C]

    def config(self, call: ResourceCall) -> C:
        return config_of(call, self.model)
