"""The control plane's Google credentials without a key file: in the sandbox anonymous clients at
its endpoints; on Azure, workload identity federation from the managed identity. The exchange is
driven through google-auth's own `identity_pool.Credentials` against a small local stand-in for
Google's STS (RFC 8693 token exchange) and IAM Credentials (`generateAccessToken`), which checks
what a real one would: the grant, the provider as audience, the managed identity's token."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from activities.clouds import Clouds
from sandbox.core.auth import SandboxCredential, token_claims
from shared.contracts import ControlPlaneSetting

PROVIDER = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/azure/providers/control-plane"
ACCOUNT = "deployer@twin-project.iam.gserviceaccount.com"


class GoogleTokenService:
    """STS `POST /v1/token` and IAM Credentials `POST /v1/projects/-/serviceAccounts/{sa}:generateAccessToken`."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, str]] = []
        self.impersonations: list[tuple[str, str]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/token":
                    form = dict(urllib.parse.parse_qsl(body.decode()))
                    service.exchanges.append(form)
                    ok = (form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
                          and form.get("audience") == PROVIDER and form.get("subject_token"))
                    answer: dict[str, Any] = {"access_token": "federated-token", "token_type": "Bearer",
                                              "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                              "expires_in": 3600} if ok else {"error": "invalid_request"}
                    self._send(200 if ok else 400, answer)
                elif self.path.endswith(":generateAccessToken"):
                    account = urllib.parse.unquote(self.path.split("/serviceAccounts/", 1)[1].split(":", 1)[0])
                    service.impersonations.append((account, self.headers.get("Authorization", "")))
                    self._send(200, {"accessToken": "impersonated-token", "expireTime": "2099-01-01T00:00:00Z"})
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def google_tokens() -> Iterator[GoogleTokenService]:
    service = GoogleTokenService()
    try:
        yield service
    finally:
        service.server.shutdown()


def test_the_managed_identity_token_is_exchanged_and_the_deployer_account_impersonated(
        google_tokens: GoogleTokenService) -> None:
    import google.auth.transport.requests

    env = {ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER: PROVIDER, ControlPlaneSetting.GCP_SERVICE_ACCOUNT: ACCOUNT,
           ControlPlaneSetting.GCP_TOKEN_AUDIENCE: "api://twin-control-plane"}
    identity = SandboxCredential("11111111-2222-3333-4444-555555555555")
    credentials = Clouds(environ={str(k): v for k, v in env.items()}).gcp_federated_credentials(
        PROVIDER, token_url=f"{google_tokens.url}/v1/token", impersonation_base=google_tokens.url,
        azure_credential=identity)
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token == "impersonated-token"
    [exchange] = google_tokens.exchanges
    assert exchange["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    # The subject token is the managed identity's Entra token for the provider's audience.
    claims = token_claims(exchange["subject_token"])
    assert claims is not None and claims["oid"] == identity.principal_id
    assert claims["aud"] == "api://twin-control-plane"
    assert google_tokens.impersonations == [(ACCOUNT, "Bearer federated-token")]
    credentials.refresh(google.auth.transport.requests.Request())
    # The federated token is still valid: only the impersonated one is asked for again.
    assert len(google_tokens.exchanges) == 1 and len(google_tokens.impersonations) == 2


def test_the_seam_picks_federation_on_azure_and_anonymous_in_the_sandbox(tmp_path: Any) -> None:
    from google.auth import identity_pool
    from google.auth.credentials import AnonymousCredentials

    federated = Clouds(environ={str(ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER): PROVIDER}).gcp_credentials()
    assert isinstance(federated, identity_pool.Credentials)
    assert federated.info["audience"] == PROVIDER and not federated.service_account_email  # no key file, no account
    sandbox = Clouds(endpoints={"gcp": {"project_id": "twin-sandbox", "api_endpoint": "http://127.0.0.1:1"}})
    assert isinstance(sandbox.gcp_credentials(), AnonymousCredentials)
    assert sandbox.gcp_project("someone-elses") == "twin-sandbox"
    assert Clouds(environ={str(ControlPlaneSetting.GCP_PROJECT): "p-1"}).gcp_project(None) == "p-1"
    assert Clouds().gcp_project("from-the-spec") == "from-the-spec"


def test_federation_without_a_project_names_the_settings_that_give_one() -> None:
    """Federated credentials carry no project: the error says where to set it, instead of what
    Application Default Credentials' lookup would say (it is not how this app authenticates)."""
    from shared.engine.errors import PermanentError

    federated = Clouds(environ={str(ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER): PROVIDER})
    with pytest.raises(PermanentError) as failure:
        federated.gcp_project(None)
    assert str(ControlPlaneSetting.GCP_PROJECT) in str(failure.value) and "project_id" in str(failure.value)
    assert federated.gcp_project("from-the-spec") == "from-the-spec"


def test_the_project_is_resolved_once_per_configuration(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's endpoints.json (or, on Google Cloud, the metadata server) is asked once per
    process and configuration, not on every call of every resource."""
    from activities.clouds import SANDBOX_DIR_SETTING
    from activities.providers.gcp._common import clouds, project_of
    from shared.resources.gcp import ServiceAccountConfig

    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"gcp": {"project_id": "once-project", "api_endpoint": "http://127.0.0.1:1"}}))
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(tmp_path))
    config = ServiceAccountConfig(name="acct", project_id=None)
    assert project_of(config) == "once-project" and clouds().is_sandbox
    endpoints.unlink()  # read again, this would now fail
    assert project_of(config) == "once-project" and clouds().is_sandbox
