"""Kudu's deploy API for a site: `/kudu/<site>/api/zipdeploy`, `/api/publish`, `/api/deployments/...`.

Auth as the SCM site takes it: a Bearer token for the ARM scope, or Basic with the site's
publishing credentials when SCM basic auth is allowed (`basicPublishingCredentialsPolicies/scm`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from typing import Any

from aiohttp import web

from sandbox.arm.models import Resource, SiteState, arm_backend
from sandbox.core.auth import ARM_AUDIENCES, audience_from_request, principal_from_request
from sandbox.core.context import SandboxContext
from sandbox.core.http import json_response, no_faults
from sandbox.kudu.models import KuduBackend

FLEX_ZIPDEPLOY_MESSAGE = "This API isn't available in this environment yet!"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"Message": message}, status, headers)


class KuduHandlers:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    @property
    def kudu(self) -> KuduBackend:
        return KuduBackend(self.ctx, arm_backend(self.ctx))

    def _base(self, site_name: str) -> str:
        return f"{self.ctx.azure_base_url}/kudu/{site_name}"

    def _authorize(self, request: web.Request) -> tuple[Resource, SiteState, str] | web.Response:
        site_name = request.match_info["site"]
        found = arm_backend(self.ctx).find_site_by_name(site_name)
        if found is None:
            return _error(404, f"Site '{site_name}' does not exist.")
        site, state = found
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        challenge = {"WWW-Authenticate": f'Basic realm="{site.rid.name}"'}
        if scheme.lower() == "bearer":
            principal = principal_from_request(request)
            if principal is None:
                return _error(401, "The bearer token is missing, garbled or expired.", challenge)
            audience = audience_from_request(request) or ""
            if audience not in ARM_AUDIENCES:
                return _error(
                    401,
                    f"The bearer token is for '{audience}'; Kudu takes a token for the ARM scope.",
                    challenge,
                )
            return site, state, principal
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _error(401, "The Basic credentials cannot be decoded.", challenge)
            if not state.scm_basic_auth:
                return _error(
                    401, "Basic authentication is disabled for this site's SCM endpoint.", challenge
                )
            expected_user = f"${site.rid.name}"
            if user.lower() not in (expected_user.lower(), site.rid.name.lower()) or not hmac.compare_digest(
                password.encode(), state.publishing_password.encode()
            ):
                return _error(401, "The publishing credentials are not valid.", challenge)
            return site, state, user
        return _error(
            401,
            "Authentication is required: a Bearer token (ARM scope) or Basic publishing credentials.",
            challenge,
        )

    async def zipdeploy(self, request: web.Request) -> web.StreamResponse:
        auth = self._authorize(request)
        if isinstance(auth, web.Response):
            return auth
        site, state, author = auth
        if arm_backend(self.ctx).is_flex_site(site):
            return _error(404, FLEX_ZIPDEPLOY_MESSAGE)
        is_async = request.query.get("isAsync", "false").lower() == "true"
        return await self._deploy(request, site, state, author, "ZipDeploy", is_async)

    async def publish(self, request: web.Request) -> web.StreamResponse:
        auth = self._authorize(request)
        if isinstance(auth, web.Response):
            return auth
        site, state, author = auth
        kind = request.query.get("type", "zip").lower()
        if kind != "zip":
            return _error(400, f"type={kind!r} is not supported by the sandbox; only zip packages are.")
        return await self._deploy(request, site, state, author, "OneDeploy", True)

    async def _deploy(
        self, request: web.Request, site: Resource, state: SiteState, author: str, kind: str, is_async: bool
    ) -> web.StreamResponse:
        kudu = self.kudu
        if kudu.running(state) is not None:
            return _error(
                409, "There is a deployment currently in progress. Please try again when it completes."
            )
        data = await request.read()
        if not data:
            return _error(400, "The request body is empty: send the zip package as the body.")
        dep = kudu.start(site, state, data, kind, author)
        base = self._base(site.rid.name)
        if is_async:
            location = f"{base}/api/deployments/latest?deployer=Push&time={time.strftime('%Y-%m-%d_%H-%M-%SZ', time.gmtime())}"
            return web.Response(status=202, headers={"Location": location})
        # Synchronous zip deploy holds the connection until the deployment ends.
        delay = max(0.0, dep.due_at - time.time())
        if delay:
            await asyncio.sleep(delay)
        dep.polled = max(dep.polled, 1)
        kudu.advance(state, dep, observing=True)
        if dep.status == 3:
            return _error(400, dep.failure or "Deployment failed.")
        return web.Response(status=200)

    @no_faults
    async def deployment(self, request: web.Request) -> web.StreamResponse:
        auth = self._authorize(request)
        if isinstance(auth, web.Response):
            return auth
        site, state, _ = auth
        dep_id = request.match_info["id"]
        if dep_id.lower() == "latest":
            dep = state.deployments[-1] if state.deployments else None
        else:
            dep = next((d for d in state.deployments if d.id == dep_id), None)
        if dep is None:
            return _error(404, f"Deployment '{dep_id}' not found.")
        self.kudu.advance(state, dep, observing=True)
        body = self.kudu.status_body(self._base(site.rid.name), dep, state)
        return json_response(body, 200 if dep.complete else 202)

    @no_faults
    async def deployment_log(self, request: web.Request) -> web.StreamResponse:
        auth = self._authorize(request)
        if isinstance(auth, web.Response):
            return auth
        _, state, _ = auth
        dep = next((d for d in state.deployments if d.id == request.match_info["id"]), None)
        if dep is None:
            return _error(404, f"Deployment '{request.match_info['id']}' not found.")
        return json_response(dep.log)

    async def deployments(self, request: web.Request) -> web.StreamResponse:
        auth = self._authorize(request)
        if isinstance(auth, web.Response):
            return auth
        site, state, _ = auth
        kudu = self.kudu
        out: list[dict[str, Any]] = []
        for dep in reversed(state.deployments):
            kudu.advance(state, dep, observing=False)
            out.append(kudu.status_body(self._base(site.rid.name), dep, state))
        return json_response(out)
