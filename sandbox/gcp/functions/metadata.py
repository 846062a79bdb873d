"""The metadata server a function's revisions see (Cloud Run's, at `169.254.169.254` on Google Cloud).

One per function, on its own `127.0.0.1` port, named to the revision's process by
`GCE_METADATA_HOST` / `GCE_METADATA_IP` (google-auth reads them when it is imported, so they are in
the environment from the start). It answers for the function's runtime service account: its
email, an access token, and OIDC ID tokens for an audience (`.../identity?audience=`), which is
how deployed code calls a private function with google-auth's standard lookup and no key file.
The ID tokens are the sandbox's unsigned ones (`common.identity_token`), which the front doors
read to apply `roles/run.invoker`. Every request must carry `Metadata-Flavor: Google`, and every
answer does, as the real server requires.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from aiohttp import web

from sandbox.gcp.common import DEFAULT_REGION, PROJECT_ID, PROJECT_NUMBER, identity_token

FLAVOR = {"Metadata-Flavor": "Google"}
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
ACCOUNTS = "/computeMetadata/v1/instance/service-accounts/"


class MetadataServer:
    """`account()` is the function's current runtime service account (it may change on update)."""

    def __init__(self, account: Callable[[], str]) -> None:
        self.account = account
        self.host = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.host = f"127.0.0.1:{runner.addresses[0][1]}"
        return self.host

    def environment(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.", headers=FLAVOR)
        path = request.path
        if path in ("", "/"):
            return web.Response(text="computeMetadata/\n", headers=FLAVOR)
        values = {
            "/computeMetadata/v1/project/project-id": PROJECT_ID,
            "/computeMetadata/v1/project/numeric-project-id": PROJECT_NUMBER,
            "/computeMetadata/v1/instance/region": f"projects/{PROJECT_NUMBER}/regions/{DEFAULT_REGION}",
        }
        if path in values:
            return web.Response(text=values[path], headers=FLAVOR)
        if not path.startswith(ACCOUNTS):
            return web.Response(status=404, text="Not Found", headers=FLAVOR)
        email = self.account()
        alias, _, leaf = path[len(ACCOUNTS):].partition("/")
        if alias not in ("default", email):
            return web.Response(status=404, text="Not Found", headers=FLAVOR)
        if leaf == "":
            info = {"aliases": ["default"], "email": email, "scopes": SCOPES}
            return web.Response(text=json.dumps(info), content_type="application/json", headers=FLAVOR)
        if leaf == "email":
            return web.Response(text=email, headers=FLAVOR)
        if leaf == "scopes":
            return web.Response(text="\n".join(SCOPES), headers=FLAVOR)
        if leaf == "token":
            token = {"access_token": f"sandbox-{secrets.token_urlsafe(24)}", "expires_in": 3599, "token_type": "Bearer"}
            return web.Response(text=json.dumps(token), content_type="application/json", headers=FLAVOR)
        if leaf == "identity":
            audience = request.query.get("audience", "")
            if not audience:
                return web.Response(status=400, text="non-empty audience parameter required", headers=FLAVOR)
            return web.Response(text=identity_token(email, audience), headers=FLAVOR)
        return web.Response(status=404, text="Not Found", headers=FLAVOR)
