"""Layers, providers and the spec field that places each layer."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

ProviderName = Literal["aws", "azure", "gcp"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("aws", "azure", "gcp")
CONTROL = "control"
"""Provider name of resources the control plane itself owns (the inter-cloud token)."""


class Layer(StrEnum):
    """Layer names, in the order a person reads a twin (not necessarily deployment order)."""

    SETUP = "setup"
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    L3_HOT = "L3_hot"
    L3_COLD = "L3_cold"
    L3_ARCHIVE = "L3_archive"
    L4 = "L4"
    L5 = "L5"


LAYERS: tuple[Layer, ...] = tuple(Layer)

LAYER_SLOTS: dict[Layer, str] = {
    Layer.L1: "layer_1_provider",
    Layer.L2: "layer_2_provider",
    Layer.L3_HOT: "layer_3_hot_provider",
    Layer.L3_COLD: "layer_3_cold_provider",
    Layer.L3_ARCHIVE: "layer_3_archive_provider",
    Layer.L4: "layer_4_provider",
    Layer.L5: "layer_5_provider",
}
"""The spec's `providers.*` field that places each layer slot (setup and L0 follow the others)."""

PULL_TWIN_PROVIDERS: frozenset[str] = frozenset({"aws"})
"""L4 providers whose twin service pulls readings through the hot reader (IoT TwinMaker)."""
