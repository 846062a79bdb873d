"""Routes of the TwinMaker stand-in (paths from botocore's iottwinmaker service model).

botocore sends these to `api.<endpoint host>` unless the client is built with
`Config(inject_host_prefix=False)`; the sandbox needs that config (see `sandbox.aws`).
"""

from __future__ import annotations

from sandbox.aws.routing import UrlPaths

SIGNING_NAME = "iottwinmaker"
# botocore's model of the service: requests are validated against it.
SERVICE_NAME = "iottwinmaker"

_WS = r"/workspaces/(?P<workspaceId>[^/]+)"

url_paths: UrlPaths = [
    ("POST", r"/workspaces-list", "list_workspaces"),
    ("POST", _WS, "create_workspace"),
    ("GET", _WS, "get_workspace"),
    ("PUT", _WS, "update_workspace"),
    ("DELETE", _WS, "delete_workspace"),
    ("POST", _WS + r"/component-types-list", "list_component_types"),
    ("POST", _WS + r"/component-types/(?P<componentTypeId>[^/]+)", "create_component_type"),
    ("GET", _WS + r"/component-types/(?P<componentTypeId>[^/]+)", "get_component_type"),
    ("PUT", _WS + r"/component-types/(?P<componentTypeId>[^/]+)", "update_component_type"),
    ("DELETE", _WS + r"/component-types/(?P<componentTypeId>[^/]+)", "delete_component_type"),
    ("POST", _WS + r"/entities-list", "list_entities"),
    ("POST", _WS + r"/entities", "create_entity"),
    ("GET", _WS + r"/entities/(?P<entityId>[^/]+)", "get_entity"),
    ("PUT", _WS + r"/entities/(?P<entityId>[^/]+)", "update_entity"),
    ("DELETE", _WS + r"/entities/(?P<entityId>[^/]+)", "delete_entity"),
    ("POST", _WS + r"/scenes-list", "list_scenes"),
    ("POST", _WS + r"/scenes", "create_scene"),
    ("GET", _WS + r"/scenes/(?P<sceneId>[^/]+)", "get_scene"),
    ("DELETE", _WS + r"/scenes/(?P<sceneId>[^/]+)", "delete_scene"),
    ("POST", r"/tags", "tag_resource"),
    ("DELETE", r"/tags", "untag_resource"),
    ("POST", r"/tags-list", "list_tags_for_resource"),
]
