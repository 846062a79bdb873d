"""The Azure provider: one module per resource kind (create/reconcile, poll, read, delete and
settings of a kind live together). Importing this package registers every kind.

`preflight.check_plan(plan)` validates regions and hosting plans before anything is created.
"""

from activities.providers.azure import (  # noqa: F401  (each module registers its kinds on import)
    app_service_plan,
    blob_container,
    control_plane_app,
    cosmos_account,
    cosmos_container,
    digital_twins,
    dtdl_models,
    durable_task,
    event_subscription,
    eventgrid_system_topic,
    eventgrid_topic,
    function_app,
    grafana,
    grafana_datasource,
    identity,
    iot_device,
    iot_hub,
    key_vault,
    monitoring,
    resource_group,
    role_assignment,
    storage_account,
    topic_subscription,
    twin_graph,
)
from activities.providers.azure._common import warm_up  # noqa: F401  (called by the app's warm-up)
