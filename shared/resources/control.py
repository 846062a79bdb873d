"""Configurations of what the control plane produces itself (no cloud holds it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.resources.base import ResourceConfig


class GeneratedSecretConfig(ResourceConfig):
    """A random secret (the inter-cloud token): `bytes` of randomness in `encoding`; with
    `keeps_previous`, the value before the last rotation is kept as a second output."""

    bytes: int = Field(ge=16)
    encoding: Literal["urlsafe-base64"]
    keeps_previous: bool
