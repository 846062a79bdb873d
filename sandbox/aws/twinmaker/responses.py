"""HTTP parsing for the TwinMaker stand-in: path, query and JSON body in, (status, JSON) out."""

from __future__ import annotations

from typing import Any

from sandbox.aws.routing import AwsCall, ValidationException
from sandbox.aws.twinmaker.models import TwinMakerBackends


class TwinMakerResponse:
    def __init__(self, backends: TwinMakerBackends) -> None:
        self.backends = backends

    async def create_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].create_workspace(call.path_params["workspaceId"], call.body)

    async def get_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].get_workspace(call.path_params["workspaceId"])

    async def update_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].update_workspace(call.path_params["workspaceId"], call.body)

    async def delete_workspace(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].delete_workspace(call.path_params["workspaceId"])

    async def list_workspaces(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_workspaces(call.body)

    async def create_component_type(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].create_component_type(p["workspaceId"], p["componentTypeId"], call.body)

    async def get_component_type(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].get_component_type(p["workspaceId"], p["componentTypeId"])

    async def update_component_type(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].update_component_type(p["workspaceId"], p["componentTypeId"], call.body)

    async def delete_component_type(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].delete_component_type(p["workspaceId"], p["componentTypeId"])

    async def list_component_types(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_component_types(call.path_params["workspaceId"], call.body)

    async def create_entity(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].create_entity(call.path_params["workspaceId"], call.body)

    async def get_entity(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].get_entity(p["workspaceId"], p["entityId"])

    async def update_entity(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].update_entity(p["workspaceId"], p["entityId"], call.body)

    async def delete_entity(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        flag = call.query.get("isRecursive", "false").lower()
        if flag not in ("true", "false"):
            raise ValidationException(f"isRecursive must be true or false, not {flag!r}")
        return 200, self.backends[call.info.region].delete_entity(p["workspaceId"], p["entityId"], flag == "true")

    async def list_entities(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_entities(call.path_params["workspaceId"], call.body)

    async def create_scene(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].create_scene(call.path_params["workspaceId"], call.body)

    async def get_scene(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].get_scene(p["workspaceId"], p["sceneId"])

    async def list_scenes(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_scenes(call.path_params["workspaceId"], call.body)

    async def delete_scene(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        p = call.path_params
        return 200, self.backends[call.info.region].delete_scene(p["workspaceId"], p["sceneId"])

    async def tag_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].tag_resource(call.body.get("resourceARN"), call.body.get("tags"))

    async def untag_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        keys = call.query_lists.get("tagKeys", [])
        return 200, self.backends[call.info.region].untag_resource(call.query.get("resourceARN"), keys)

    async def list_tags_for_resource(self, call: AwsCall) -> tuple[int, dict[str, Any]]:
        return 200, self.backends[call.info.region].list_tags(call.body.get("resourceARN"))
