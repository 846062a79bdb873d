"""HTTP parsing for the Managed Grafana stand-in."""

from __future__ import annotations

from typing import Any

from sandbox.aws.grafana.models import GrafanaBackends
from sandbox.aws.routing import AwsCall


class GrafanaResponse:
    def __init__(self, backends: GrafanaBackends) -> None:
        self.backends = backends

    async def create_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 202, self.backends[call.info.region].create_workspace(call.body)

    async def describe_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].describe_workspace(call.path_params["workspaceId"])

    async def list_workspaces(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        q = call.query
        return 200, self.backends[call.info.region].list_workspaces(q.get("maxResults"), q.get("nextToken"))

    async def delete_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 202, self.backends[call.info.region].delete_workspace(call.path_params["workspaceId"])

    async def create_workspace_api_key(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].create_api_key(call.path_params["workspaceId"], call.body)

    async def delete_workspace_api_key(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].delete_api_key(p["workspaceId"], p["keyName"])

    async def update_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 202, self.backends[call.info.region].update_workspace(call.path_params["workspaceId"], call.body)

    async def tag_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].tag_resource(call.path_params["resourceArn"], call.body.get("tags"))

    async def untag_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        keys = call.query_lists.get("tagKeys", [])
        return 200, self.backends[call.info.region].untag_resource(call.path_params["resourceArn"], keys)

    async def list_tags_for_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_tags(call.path_params["resourceArn"])
