"""The control plane's Function App: it only registers blueprints, one per cohesive area."""

import azure.durable_functions as df
import azure.functions as func

from activities.blueprint import bp as activities
from control_plane.api import bp as plan_api
from control_plane.deployments_api import bp as deployments_api
from control_plane.events import bp as event_triggers
from control_plane.health import bp as health
from control_plane.openapi import bp as openapi
from control_plane.startup import check_vault_setting
from orchestrators.blueprint import BLUEPRINTS as orchestrators

check_vault_setting()  # on Azure: no start without the vault unless TWIN_ALLOW_INLINE_SECRETS=true

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(plan_api)  # POST /api/plan
app.register_functions(deployments_api)  # deployments, twins, token rotation, refresh
app.register_functions(openapi)  # GET /api/openapi.json
app.register_functions(event_triggers)  # twin.output.changed -> propagate_outputs
app.register_functions(health)  # GET /api/health: events route, vault, ARM watch, identity
for blueprint in orchestrators:  # deploy_twin, propagate_outputs, destroy_twin, rotate_token, ..., twin_state
    app.register_functions(blueprint)
app.register_functions(activities)  # resource ensure/poll/read/delete, settings, events
