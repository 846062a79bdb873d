"""Routes of the Managed Grafana stand-in (paths from botocore's grafana service model)."""

from __future__ import annotations

from sandbox.aws.routing import UrlPaths

SIGNING_NAME = "grafana"
# botocore's model of the service: requests are validated against it.
SERVICE_NAME = "grafana"

_WS = r"/workspaces/(?P<workspaceId>[^/]+)"

url_paths: UrlPaths = [
    ("POST", r"/workspaces", "create_workspace"),
    ("GET", r"/workspaces", "list_workspaces"),
    ("GET", _WS, "describe_workspace"),
    ("PUT", _WS, "update_workspace"),
    ("DELETE", _WS, "delete_workspace"),
    ("POST", _WS + r"/apikeys", "create_workspace_api_key"),
    ("DELETE", _WS + r"/apikeys/(?P<keyName>[^/]+)", "delete_workspace_api_key"),
    ("POST", r"/tags/(?P<resourceArn>[^/]+)", "tag_resource"),
    ("GET", r"/tags/(?P<resourceArn>[^/]+)", "list_tags_for_resource"),
    ("DELETE", r"/tags/(?P<resourceArn>[^/]+)", "untag_resource"),
]
