"""Boundaries: which receiver serves which sender when two layers sit on different clouds, and
how a telemetry reading reaches the twin graph for each placement."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.contracts.functions import Function
from shared.contracts.layers import Layer
from shared.contracts.outputs import Output
from shared.contracts.settings import Setting


@dataclass(frozen=True)
class Boundary:
    """A layer-to-layer hop that may cross clouds. When `sender_layer` and `receiver_layer` sit
    on different clouds, `receivers` run in L0 of the receiving cloud and the sending function
    reads the receiver's URL output from `url_settings` plus the inter-cloud token."""

    name: str
    sender_layer: Layer
    receiver_layer: Layer
    sender: Function
    receivers: tuple[Function, ...]
    url_settings: tuple[tuple[Output, Setting], ...]


BOUNDARIES: tuple[Boundary, ...] = (
    Boundary("L1->L2", Layer.L1, Layer.L2, Function.CONNECTOR, (Function.INGESTION,),
             ((Output.INGESTION_URL, Setting.REMOTE_INGESTION_URL),)),
    Boundary("L2->L3_hot", Layer.L2, Layer.L3_HOT, Function.PERSISTER, (Function.HOT_WRITER,),
             ((Output.HOT_WRITER_URL, Setting.REMOTE_WRITER_URL),)),
    Boundary("L3_hot->L3_cold", Layer.L3_HOT, Layer.L3_COLD, Function.HOT_TO_COLD_MOVER, (Function.COLD_WRITER,),
             ((Output.COLD_WRITER_URL, Setting.REMOTE_COLD_WRITER_URL),)),
    Boundary("L3_cold->L3_archive", Layer.L3_COLD, Layer.L3_ARCHIVE, Function.COLD_TO_ARCHIVE_MOVER,
             (Function.ARCHIVE_WRITER,), ((Output.ARCHIVE_WRITER_URL, Setting.REMOTE_ARCHIVE_WRITER_URL),)),
    # The reader boundary is pulled: the "sender" is the pulling side (TwinMaker's dt-reader on
    # AWS L4, the L5 Grafana datasource) and the receivers sit on the hot cloud.
    Boundary("L3_hot->L4", Layer.L4, Layer.L3_HOT, Function.DT_READER,
             (Function.HOT_READER, Function.HOT_READER_LAST_ENTRY),
             ((Output.HOT_READER_URL, Setting.REMOTE_READER_URL),
              (Output.HOT_READER_LAST_ENTRY_URL, Setting.REMOTE_READER_LAST_ENTRY_URL))),
    # Event feedback goes back against the telemetry's direction: the event checker on L2 sends
    # it to `event-feedback` on L1's cloud, which reaches the device through L1. Only planned when
    # the spec asks for feedback (`options.return_feedback_to_device`).
    Boundary("L2->L1", Layer.L2, Layer.L1, Function.EVENT_CHECKER, (Function.EVENT_FEEDBACK,),
             ((Output.FEEDBACK_URL, Setting.REMOTE_FEEDBACK_URL),)),
)

FEEDBACK_BOUNDARY = "L2->L1"

RECEIVER_OUTPUTS: dict[Function, Output] = {
    Function.INGESTION: Output.INGESTION_URL,
    Function.HOT_WRITER: Output.HOT_WRITER_URL,
    Function.COLD_WRITER: Output.COLD_WRITER_URL,
    Function.ARCHIVE_WRITER: Output.ARCHIVE_WRITER_URL,
    Function.HOT_READER: Output.HOT_READER_URL,
    Function.HOT_READER_LAST_ENTRY: Output.HOT_READER_LAST_ENTRY_URL,
    Function.ADT_PUSHER: Output.ADT_PUSHER_URL,
    Function.EVENT_FEEDBACK: Output.FEEDBACK_URL,
}
"""The URL output each receiver yields (one receiver of each kind per twin at most)."""


class TwinUpdatePath(StrEnum):
    """How a telemetry reading reaches the twin graph when L4 is Azure (push) or AWS (pull); each
    reading updates the twin exactly once, on exactly one of these paths."""

    EVENT_GRID_ADT_UPDATER = "event-grid-adt-updater"
    """L1 = L2 = L4 = azure: IoT Hub -> Event Grid -> `adt-updater` in the L4 app."""
    PERSISTER_DIRECT = "persister-direct"
    """L1 != azure, L2 = L4 = azure: the Azure persister patches the twin after its storage write."""
    REMOTE_ADT_PUSHER = "remote-adt-pusher"
    """L2 on aws/gcp, L4 = azure: the remote persister POSTs to the Azure L0 `adt-pusher`."""
    PULL = "pull"
    """L4 = aws: nothing pushes; TwinMaker pulls through the hot reader."""


def twin_update_path(l1: str, l2: str, l4: str) -> TwinUpdatePath:
    """The twin-update decision table for one (L1, L2, L4) placement."""
    if l4 != "azure":
        return TwinUpdatePath.PULL
    if l2 != "azure":
        return TwinUpdatePath.REMOTE_ADT_PUSHER
    if l1 == "azure":
        return TwinUpdatePath.EVENT_GRID_ADT_UPDATER
    return TwinUpdatePath.PERSISTER_DIRECT
