"""Long-running operations (google.longrunning.Operation) of the GCP sandbox's REST APIs.

The clients poll `GET /v{N}/{operation name}` and parse the answer strictly
(`ignore_unknown_fields=False`), so an operation is exactly `name`, `metadata`, `done` and either
`response` or `error`, with `@type` on `metadata` and `response`.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.gcp.common import GoogleError, now_rfc3339


@dataclass
class Operation:
    name: str
    metadata: dict[str, Any]
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    # The metadata field that records when the operation ended ("endTime"), if its type has one.
    end_field: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "metadata": self.metadata, "done": self.done}
        if self.error is not None:
            out["error"] = self.error
        elif self.response is not None:
            out["response"] = self.response
        return out


class Operations:
    """Every operation the sandbox started, by name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}

    def start(
        self, parent: str, metadata_type: str, metadata: dict[str, Any], end_field: str | None = None
    ) -> Operation:
        """A new pending operation under `parent` (`projects/P/locations/L` or `projects/P/databases/D`);
        `metadata` holds only fields its type has (the poll is parsed strictly)."""
        name = f"{parent}/operations/operation-{uuid.uuid4().hex[:20]}"
        op = Operation(name, {"@type": metadata_type, **metadata}, end_field=end_field)
        with self._lock:
            self._ops[name] = op
        return op

    def finish(self, op: Operation, response_type: str, response: dict[str, Any]) -> None:
        with self._lock:
            op.response = {"@type": response_type, **json.loads(json.dumps(response))}
            self._close(op)

    def fail(self, op: Operation, error: GoogleError) -> None:
        with self._lock:
            op.error = error.rpc_status()
            self._close(op)

    def _close(self, op: Operation) -> None:
        if op.end_field:
            op.metadata[op.end_field] = now_rfc3339()
        op.done = True
        op.finished.set()

    def get(self, name: str) -> Operation:
        with self._lock:
            op = self._ops.get(name)
        if op is None:
            raise GoogleError("NOT_FOUND", f"Operation {name} not found.")
        return op

    def reset(self) -> None:
        with self._lock:
            self._ops.clear()
