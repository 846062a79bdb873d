"""Digital Twins data-plane helpers shared by the models and the twin graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import HttpResponseError

from shared.engine.errors import TransientError

T = TypeVar("T")


def data_plane(what: str, fn: Callable[[], T]) -> T:
    """Run a data-plane call; a 403 is the role assignment not being effective yet (it takes
    minutes on Azure), so it is transient, not a permission to fix by hand."""
    try:
        return fn()
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise TransientError(
                f"Digital Twins refused to {what} (403): the 'Azure Digital Twins Data Owner' role of the "
                "deployer is not effective yet"
            ) from exc
        raise
