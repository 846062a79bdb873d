"""Every orchestrator and the `twin_state` entity, as one blueprint for `function_app.py`."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators import deploy, destroy, propagate, refresh, resource, rotate, twin_state

bp = df.Blueprint()
for _module in (deploy, propagate, refresh, destroy, rotate, resource, twin_state):
    # What `FunctionApp.register_functions` does: copy the module blueprint's function builders.
    bp._function_builders.extend(_module.bp._function_builders)
