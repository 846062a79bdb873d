"""The plan: every resource a twin needs, the outputs they yield, and the wires between them.

`build_plan(spec)` is a pure, deterministic function of the spec. Resource ids are
`{provider}/{layer}/{name}`; each resource carries its kind's typed configuration
(`shared.resources`). An Azure Function App is one resource (`azure/{layer}/function-app`) whose
config lists the functions it hosts, because its app settings are read-modify-written as a
whole. The orchestrator walks `topological_order()` and, when an output changes, re-applies
`consumers_of(output)`.

- `model`: `Plan`, `Resource`, `Wire`, ... and the graph methods;
- `builder`: `build_plan`, the layer walk (what a twin needs, wherever it runs);
- `aws`, `azure`, `gcp`: what each layer is made of on that cloud;
- `drafts`, `cloud`: what the walk and the clouds' planners share.
"""

from shared.plan.builder import build_plan, placement_of
from shared.plan.model import (
    DEFAULT_KIND_SECONDS,
    DEFAULT_SECONDS,
    BoundaryDecision,
    Plan,
    PlannedOutput,
    Resource,
    Wire,
)

__all__ = [
    "DEFAULT_KIND_SECONDS",
    "DEFAULT_SECONDS",
    "BoundaryDecision",
    "Plan",
    "PlannedOutput",
    "Resource",
    "Wire",
    "build_plan",
    "placement_of",
]
