"""Placement decisions shared by the deployer (the plan) and the runtime (payload functions).

Every function here takes a placement, `layer -> provider` with keys `L1`, `L2`, `L3_hot`,
`L3_cold`, `L3_archive`, `L4`, `L5` (the `providers` of `DIGITAL_TWIN_INFO`), so a payload
function decides "write locally or POST to the remote writer?" with the same code the plan used
to decide which receivers to deploy (seed-inventory lesson 10: compute boundaries once).
Standard library only, like `shared.contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from shared.contracts import (
    BOUNDARIES,
    FEEDBACK_BOUNDARY,
    PULL_TWIN_PROVIDERS,
    Boundary,
    Function,
    Layer,
    TwinUpdatePath,
    twin_update_path,
)

Placement = Mapping[str, str]

READER_BOUNDARY = "L3_hot->L4"


def boundary(name: str) -> Boundary:
    """The boundary called `name` (e.g. `L2->L3_hot`)."""
    for b in BOUNDARIES:
        if b.name == name:
            return b
    raise KeyError(f"unknown boundary {name!r}; known: {', '.join(b.name for b in BOUNDARIES)}")


def sends_remote(placement: Placement, sender_layer: Layer | str, receiver_layer: Layer | str) -> bool:
    """Does a push from `sender_layer` to `receiver_layer` cross clouds (and so go through the
    receiver in L0 of the receiving cloud, with the inter-cloud token)?"""
    return placement[str(sender_layer)] != placement[str(receiver_layer)]


def remote_twin_pull(placement: Placement) -> bool:
    """A pulling twin service (TwinMaker) on another cloud than hot storage."""
    hot, l4 = placement[Layer.L3_HOT], placement[Layer.L4]
    return l4 in PULL_TWIN_PROVIDERS and l4 != hot


def reader_receivers_needed(placement: Placement) -> bool:
    """The hot-reader boundary: pulled by a TwinMaker L4 or by the L5 datasource on another cloud."""
    return remote_twin_pull(placement) or placement[Layer.L5] != placement[Layer.L3_HOT]


def local_readers_needed(placement: Placement) -> bool:
    """The hot cloud's own readers: for a TwinMaker L4 or an L5 datasource on the same cloud."""
    hot, l4, l5 = placement[Layer.L3_HOT], placement[Layer.L4], placement[Layer.L5]
    return (l4 in PULL_TWIN_PROVIDERS and l4 == hot) or l5 == hot


def hot_reader_layer(placement: Placement) -> str | None:
    """Where the hot cloud's one hot reader runs: `L0` (public, token-checked) when any puller is
    on another cloud, in which case same-cloud pullers use it too; `L3_hot` when only same-cloud
    pullers exist; None when nothing reads hot storage through a reader."""
    if reader_receivers_needed(placement):
        return str(Layer.L0)
    if local_readers_needed(placement):
        return str(Layer.L3_HOT)
    return None


def update_path(placement: Placement) -> TwinUpdatePath:
    """The twin-update path for this placement (see `contracts.twin_update_path`)."""
    return twin_update_path(placement[Layer.L1], placement[Layer.L2], placement[Layer.L4])


FEEDBACK_CHANNELS = frozenset({"aws", "azure", "gcp"})
"""Clouds whose L1 can send to a device: IoT Core MQTT publish, the IoT Hub device twin, and on
GCP (no Cloud IoT Core since 2023) a feedback topic each device reads through its own filtered
pull subscription."""
FEEDBACK_SENDERS = frozenset({"aws", "azure", "gcp"})
"""Clouds whose event checker sends feedback to a remote `event-feedback`."""


def feedback_path(placement: Placement, wanted: bool) -> Literal["local", "remote"] | None:
    """How event feedback reaches devices: `local` (L1 and L2 share a cloud: the L2
    `event-feedback`), `remote` (the `event-feedback` receiver on L1's cloud, token-checked), or
    None (not asked for, or L1's cloud is not in `FEEDBACK_CHANNELS`, or L2's not in
    `FEEDBACK_SENDERS`)."""
    if not wanted:
        return None
    l1, l2 = placement[Layer.L1], placement[Layer.L2]
    if l1 not in FEEDBACK_CHANNELS:
        return None
    if l1 == l2:
        return "local"
    return "remote" if l2 in FEEDBACK_SENDERS else None


def boundary_receivers(placement: Placement, feedback: bool = False) -> dict[str, list[Function]]:
    """Provider -> the receiver functions its L0 hosts. A receiver runs on the receiving cloud
    only when the sending layer is on another cloud; the ADT pusher runs in Azure L0 whenever a
    persister on aws/gcp must reach an Azure L4; `event-feedback` runs on L1's cloud when
    `feedback` is asked for and the event checker is elsewhere (`feedback_path`). A provider
    absent from the result has no L0."""
    out: dict[str, list[Function]] = {}
    for b in BOUNDARIES:
        if b.name == FEEDBACK_BOUNDARY:
            if feedback_path(placement, feedback) == "remote":
                out.setdefault(placement[b.receiver_layer], []).extend(b.receivers)
        elif b.name == READER_BOUNDARY:
            if reader_receivers_needed(placement):
                out.setdefault(placement[b.receiver_layer], []).extend(b.receivers)
        elif sends_remote(placement, b.sender_layer, b.receiver_layer):
            out.setdefault(placement[b.receiver_layer], []).extend(b.receivers)
    if update_path(placement) == TwinUpdatePath.REMOTE_ADT_PUSHER:
        out.setdefault("azure", []).append(Function.ADT_PUSHER)
    return out


def function_resource_id(provider: str, layer: str, function: Function | str) -> str:
    """The plan resource that hosts `function`: the layer's Function App on Azure, the function
    itself (Lambda / Cloud Function) elsewhere."""
    if provider == "azure":
        return f"azure/{layer}/function-app"
    return f"{provider}/{layer}/{Function(function)}"
