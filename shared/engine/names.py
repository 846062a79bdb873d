"""The engine's names: the project's contracts it uses (from `shared.contracts`, their single
source) and the durable function names (orchestrators, activities, entity), spelled once.
"""

from __future__ import annotations

from enum import StrEnum

from shared.contracts import EventType, Layer, Output, Setting, event_source

# CloudEvents the control plane publishes (DESIGN section 6).
EVENT_OUTPUT_CHANGED = str(EventType.OUTPUT_CHANGED)
EVENT_LAYER_COMPLETED = str(EventType.LAYER_COMPLETED)
EVENT_DEPLOYMENT_COMPLETED = str(EventType.DEPLOYMENT_COMPLETED)
EVENT_DEPLOYMENT_FAILED = str(EventType.DEPLOYMENT_FAILED)

# The inter-cloud token: the output, and the setting receivers also accept during a rotation.
INTER_CLOUD_TOKEN = str(Output.INTER_CLOUD_TOKEN)
INTER_CLOUD_TOKEN_PREVIOUS = str(Setting.INTER_CLOUD_TOKEN_PREVIOUS)
INTER_CLOUD_TOKEN_PREVIOUS_OUTPUT = str(Output.INTER_CLOUD_TOKEN_PREVIOUS)
# L0 hosts the receivers of cross-cloud traffic; every other consumer of the token sends.
RECEIVER_LAYER = str(Layer.L0)

# Durable function names (orchestrators, activities, entity): called by name, so spelled once.
DEPLOY_TWIN = "deploy_twin"
PROPAGATE_OUTPUTS = "propagate_outputs"
DESTROY_TWIN = "destroy_twin"
ROTATE_TOKEN = "rotate_token"
REFRESH_OUTPUTS = "refresh_outputs"
RESOURCE_APPLY = "resource_apply"
RESOURCE_REMOVE = "resource_remove"
RESOURCES_BATCH = "resources_batch"
TWIN_STATE = "twin_state"

RESOURCE_ENSURE = "resource_ensure"
RESOURCE_POLL = "resource_poll"
RESOURCE_READ = "resource_read"  # what exists now, stamped with when it was read (refresh_outputs)
RESOURCE_DELETE = "resource_delete"
SETTINGS_APPLY = "settings_apply"
EVENTS_PUBLISH = "events_publish"
SECRET_GENERATE = "secret_generate"



class StateOp(StrEnum):
    """Operations of the `twin_state` entity (payloads: `shared/engine/state.py`)."""

    GET = "get"
    ACQUIRE = "acquire"
    RELEASE = "release"
    SET_PLAN = "set_plan"
    RECORD_RESOURCES = "record_resources"
    MARK_RESOURCE = "mark_resource"
    RECORD_OUTPUT = "record_output"
    RECORD_APPLIED = "record_applied"
    OBSERVE_OUTPUTS = "observe_outputs"
    FORGET_RESOURCE = "forget_resource"
    CLEAR = "clear"


__all__ = ["event_source"]
