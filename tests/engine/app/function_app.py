"""The engine's test app: the same blueprints as the project's function_app.py.

Test settings (provider modules, the fake provider's files, engine options, the event endpoint)
come from the host's `environ`, as app settings do on Azure.
"""

import azure.durable_functions as df
import azure.functions as func

from activities.blueprint import bp as activities_bp
from control_plane.api import bp as plan_api
from control_plane.deployments_api import bp as deployments_api
from control_plane.events import bp as events_bp
from control_plane.health import bp as health_bp
from control_plane.openapi import bp as openapi_bp
from orchestrators.blueprint import BLUEPRINTS as orchestrator_blueprints

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (plan_api, deployments_api, openapi_bp, events_bp, health_bp, *orchestrator_blueprints, activities_bp):
    app.register_functions(blueprint)


@app.event_grid_trigger(arg_name="event")
def record_event(event: func.EventGridEvent) -> None:
    """Test-only sink: every published event, appended to ENGINE_EVENTS_LOG for the tests to scan."""
    import json
    import os

    record = {
        "type": getattr(event, "type", None) or getattr(event, "event_type", None),
        "source": getattr(event, "source", None),
        "id": event.id,
        "data": event.get_json(),
    }
    with open(os.environ["ENGINE_EVENTS_LOG"], "a") as fh:
        fh.write(json.dumps(record) + "\n")
