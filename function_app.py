"""The control plane's Function App: it only registers blueprints, one per cohesive area."""

import azure.durable_functions as df
import azure.functions as func

from control_plane.api import bp as plan_api

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(plan_api)
