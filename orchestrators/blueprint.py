"""Every orchestrator and the `twin_state` entity: the blueprints `function_app.py` registers."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators import deploy, destroy, propagate, refresh, resource, rotate, twin_state

BLUEPRINTS: tuple[df.Blueprint, ...] = tuple(
    module.bp for module in (deploy, propagate, refresh, destroy, rotate, resource, twin_state))
