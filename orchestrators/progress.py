"""The compact custom status of a twin operation (Durable caps custom status at 16 KB).

Per layer: provider(s), state, done/total; counts of actions; outputs available; the current
step; a few running resource ids. Its size does not grow with the number of devices: lists are
capped and everything else is a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.engine.types import Resource

MAX_LISTED = 10
MAX_MESSAGE = 400


@dataclass
class Progress:
    operation: str
    twin: str
    layer_of: dict[str, str]
    providers: dict[str, list[str]]
    total: dict[str, int]
    outputs_total: int = 0
    step: str = "starting"
    done: dict[str, int] = field(default_factory=dict)
    failed_layers: set[str] = field(default_factory=set)
    running: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    outputs_available: int = 0
    error: dict[str, str] | None = None

    @classmethod
    def for_resources(cls, operation: str, twin: str, resources: Iterable[Resource], outputs_total: int = 0) -> Progress:
        layer_of: dict[str, str] = {}
        providers: dict[str, list[str]] = {}
        total: dict[str, int] = {}
        for r in resources:
            layer = r.layer or "-"
            layer_of[r.id] = layer
            total[layer] = total.get(layer, 0) + 1
            if r.provider not in providers.setdefault(layer, []):
                providers[layer].append(r.provider)
        return cls(operation, twin, layer_of, providers, total, outputs_total)

    def started(self, rid: str) -> None:
        self.running.append(rid)

    def finished(self, rid: str, action: str | None) -> bool:
        """Count a finished resource; True when this completed its layer."""
        if rid in self.running:
            self.running.remove(rid)
        layer = self.layer_of.get(rid, "-")
        if action is None:
            self.failed_layers.add(layer)
            return False
        self.actions[action] = self.actions.get(action, 0) + 1
        self.done[layer] = self.done.get(layer, 0) + 1
        return self.done[layer] == self.total.get(layer, 0)

    def fail(self, resource: str, message: str) -> None:
        self.error = {"resource": resource, "message": message[:MAX_MESSAGE]}

    def layer_state(self, layer: str) -> str:
        if layer in self.failed_layers:
            return "failed"
        done = self.done.get(layer, 0)
        if done == self.total[layer]:
            return "done"
        if done or any(self.layer_of.get(r) == layer for r in self.running):
            return "running"
        return "pending"

    def status(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "twin": self.twin,
            "step": self.step,
            "layers": {
                layer: {
                    "provider": "+".join(self.providers[layer]),
                    "state": self.layer_state(layer),
                    "done": self.done.get(layer, 0),
                    "total": self.total[layer],
                }
                for layer in self.total
            },
            "running": self.running[:MAX_LISTED],
            "running_count": len(self.running),
            "actions": dict(sorted(self.actions.items())),
            "outputs": {"available": self.outputs_available, "total": self.outputs_total},
            "error": self.error,
        }
