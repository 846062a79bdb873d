"""The credentials seam: the one place that builds cloud SDK clients from configuration.

- Real clouds: Azure clients with `DefaultAzureCredential` (managed identity on Azure), AWS
  clients from boto3's default credential chain, Google clients with Application Default
  Credentials, or, on Azure, workload identity federation from the managed identity
  (`TWIN_GCP_WORKLOAD_IDENTITY_PROVIDER`: a managed-identity token is exchanged at Google's STS
  for a Google access token; no key file anywhere).
- Sandbox: when the app setting `TWIN_SANDBOX_DIR` names a folder holding the sandbox's
  `endpoints.json`, every client points at the local endpoints (ARM base URL, the sandbox CA,
  a static sandbox token; moto's endpoint with dummy AWS keys; the GCP REST endpoint and gRPC
  host with anonymous Google credentials). Run by the sandbox as a Function App (the installed
  package), the app authenticates as App Service gives it: its managed identity through
  `IDENTITY_ENDPOINT` (never the sandbox's own modules: they are not deployed).
- AWS without stored keys: with `TWIN_AWS_ROLE_ARN`, AWS clients use the credentials STS
  `AssumeRoleWithWebIdentity` gives for the Azure identity's token (audience
  `TWIN_AWS_WEB_IDENTITY_AUDIENCE`), refreshed before they expire; in the sandbox against its STS.

Providers never construct clients themselves, so nothing in `activities/` knows where it runs.
SDK modules are imported lazily: the Function App must start fast.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.contracts import AZURE_TOKEN_EXCHANGE_AUDIENCE, ControlPlaneSetting
from shared.engine.errors import PermanentError

# Alias kept for the AWS providers and their tests, which import it by this name.
SANDBOX_DIR_SETTING = ControlPlaneSetting.SANDBOX_DIR
ARM_SCOPE = "https://management.azure.com/.default"
GCP_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
GCP_STS_URL = "https://sts.googleapis.com/v1/token"
GCP_JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
DEFAULT_GCP_TOKEN_AUDIENCE = AZURE_TOKEN_EXCHANGE_AUDIENCE


# What azure-identity's credentials read from the process environment when they are made: a
# credential is kept per identity, so a change of these makes a new one.
_MANAGED_IDENTITY_ENVIRON = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET")
_DEFAULT_CREDENTIAL_ENVIRON = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", *_MANAGED_IDENTITY_ENVIRON,
)
_credentials: dict[tuple[str, ...], Any] = {}
_credentials_lock = threading.Lock()


@dataclass(frozen=True)
class Clouds:
    """Client factory for one configuration (real or sandbox)."""

    endpoints: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def is_sandbox(self) -> bool:
        return bool(self.endpoints)

    # --- Azure ---------------------------------------------------------------------------

    @property
    def on_function_app(self) -> bool:
        """Running as a Function App that has a managed identity (App Service, or the sandbox's
        Function App runtime): `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set."""
        return bool(self.environ.get("IDENTITY_ENDPOINT") and self.environ.get("IDENTITY_HEADER"))

    def azure_credential(self) -> Any:
        """The Azure credential of this configuration, one per process and identity: every client
        and activity shares it, so a token is fetched once and kept until it nears expiry (a new
        credential per client fetched its own, e.g. an IMDS call per role assignment on Azure)."""
        if self.is_sandbox and not self.on_function_app:
            key: tuple[str, ...] = ("sandbox", str(self._azure("deployer_principal_id")))
        elif self.is_sandbox:
            key = ("managed", self.environ.get(ControlPlaneSetting.AZURE_CLIENT_ID) or "",
                   *(os.environ.get(name, "") for name in _MANAGED_IDENTITY_ENVIRON))
        else:
            key = ("default", *(os.environ.get(name, "") for name in _DEFAULT_CREDENTIAL_ENVIRON))
        with _credentials_lock:
            credential = _credentials.get(key)
            if credential is None:
                credential = _credentials[key] = self._new_azure_credential()
        return credential

    def _new_azure_credential(self) -> Any:
        if self.is_sandbox and not self.on_function_app:
            from sandbox.core.auth import SandboxCredential

            return SandboxCredential(str(self._azure("deployer_principal_id")))
        if self.is_sandbox:
            from azure.identity import ManagedIdentityCredential

            client_id = self.environ.get(ControlPlaneSetting.AZURE_CLIENT_ID) or None
            return ManagedIdentityCredential(client_id=client_id)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def azure_tenant_id(self) -> str:
        """The Entra tenant of the configured cloud (the sandbox's, or the credential's `tid`)."""
        if self.is_sandbox:
            return str(self._azure("tenant_id"))
        return _claim(self.azure_credential().get_token(ARM_SCOPE).token, "tid")

    def azure_subscription_id(self) -> str:
        if self.is_sandbox:
            return str(self._azure("subscription_id"))
        value = self.environ.get(ControlPlaneSetting.AZURE_SUBSCRIPTION_ID, "")
        if not value:
            raise PermanentError(f"app setting {ControlPlaneSetting.AZURE_SUBSCRIPTION_ID} is not set")
        return value

    def azure_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any azure-core client: sandbox CA (and ARM base URL for mgmt clients)."""
        if not self.is_sandbox:
            return {}
        return {"connection_verify": str(self._azure("ca_file"))}

    def azure_mgmt_client(self, client_cls: type, subscription_id: str | None = None) -> Any:
        """An azure-mgmt-* client (e.g. `ResourceManagementClient`) for the configured cloud."""
        kwargs = self.azure_client_kwargs()
        if self.is_sandbox:
            kwargs["base_url"] = str(self._azure("arm"))
            kwargs["credential_scopes"] = [ARM_SCOPE]
        return client_cls(self.azure_credential(), subscription_id or self.azure_subscription_id(), **kwargs)

    # --- AWS -----------------------------------------------------------------------------

    def aws_client(self, service: str, region: str | None = None) -> Any:
        import boto3

        role_arn = (self.environ.get(ControlPlaneSetting.AWS_ROLE_ARN) or "").strip()
        if not self.is_sandbox:
            maker: Any = self._web_identity_session(role_arn) if role_arn else boto3
            return maker.client(service, region_name=region or self.environ.get(ControlPlaneSetting.AWS_REGION) or None)
        aws = self.endpoints.get("aws") or {}
        if not aws:
            raise PermanentError("the sandbox has no AWS endpoint (endpoints.json lacks 'aws')")
        endpoint = {"iottwinmaker": aws.get("twinmaker_endpoint_url"), "grafana": aws.get("grafana_endpoint_url")}.get(
            service
        ) or aws.get("endpoint_url")
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "region_name": region or aws.get("region") or "us-east-1",
            "endpoint_url": endpoint,
            # botocore prefixes some hosts (TwinMaker's `api.`); 127.0.0.1 has no such subdomain.
            "config": Config(inject_host_prefix=False),
            "verify": self.endpoints.get("azure", {}).get("ca_file") if str(endpoint).startswith("https") else None,
        }
        if role_arn:
            return self._web_identity_session(role_arn).client(service, **kwargs)
        return boto3.client(service, aws_access_key_id="testing", aws_secret_access_key="testing", **kwargs)

    def _web_identity_session(self, role_arn: str) -> Any:
        """A boto3 session whose credentials come from STS `AssumeRoleWithWebIdentity` with the
        Azure identity's token (cached per process and role; botocore refreshes them)."""
        audience = (self.environ.get(ControlPlaneSetting.AWS_WEB_IDENTITY_AUDIENCE) or "").strip() or DEFAULT_AWS_AUDIENCE
        sts_endpoint = str((self.endpoints.get("aws") or {}).get("endpoint_url") or "") if self.is_sandbox else ""
        key = (role_arn, audience, sts_endpoint)
        with _sessions_lock:
            session = _web_identity_sessions.get(key)
            if session is None:
                session = _web_identity_sessions[key] = _assume_role_session(self, role_arn, audience, sts_endpoint)
        return session

    # --- Google Cloud --------------------------------------------------------------------

    def gcp_credentials(self) -> Any:
        """Anonymous in the sandbox; federated from the managed identity when configured; else
        Application Default Credentials (the metadata server on Google Cloud)."""
        if self.is_sandbox:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        provider = self.environ.get(ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER, "").strip()
        if provider:
            return self.gcp_federated_credentials(provider)
        import google.auth

        credentials, _ = google.auth.default(scopes=list(GCP_SCOPES))
        return credentials

    def gcp_federated_credentials(self, provider: str, token_url: str = GCP_STS_URL,
                                  impersonation_base: str = "https://iamcredentials.googleapis.com",
                                  azure_credential: Any = None) -> Any:
        """Workload identity federation: the managed identity's Entra token (for the provider's
        audience) exchanged at Google's STS, then, if `TWIN_GCP_SERVICE_ACCOUNT` is set, that
        service account impersonated. `azure_credential`: default this seam's Azure credential."""
        from google.auth import identity_pool

        account = self.environ.get(ControlPlaneSetting.GCP_SERVICE_ACCOUNT, "").strip()
        audience = self.environ.get(ControlPlaneSetting.GCP_TOKEN_AUDIENCE, "").strip() or DEFAULT_GCP_TOKEN_AUDIENCE
        impersonation = (f"{impersonation_base}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
                         if account else None)
        return identity_pool.Credentials(
            audience=provider, subject_token_type=GCP_JWT_TOKEN_TYPE, token_url=token_url,
            subject_token_supplier=ManagedIdentityTokenSupplier(azure_credential or self.azure_credential(), audience),
            service_account_impersonation_url=impersonation, scopes=list(GCP_SCOPES))

    def gcp_project(self, configured: str | None = None) -> str:
        """The project a GCP resource lives in: the spec's, else `TWIN_GCP_PROJECT`, else the
        credentials' own project (the sandbox has exactly one)."""
        if self.is_sandbox:
            return str(self._gcp("project_id"))
        if configured:
            return configured
        value = self.environ.get(ControlPlaneSetting.GCP_PROJECT, "").strip()
        if value:
            return value
        if self.environ.get(ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER, "").strip():
            # Federated credentials carry no project, and Application Default Credentials (what
            # would name one) are not what this app authenticates with: their error would mislead.
            raise PermanentError(f"no Google Cloud project: with workload identity federation "
                                 f"({ControlPlaneSetting.GCP_WORKLOAD_IDENTITY_PROVIDER}) the credentials name none; set "
                                 f"clouds.gcp.project_id in the spec or the app setting {ControlPlaneSetting.GCP_PROJECT}")
        project = _default_gcp_project()
        if not project:
            raise PermanentError(f"no Google Cloud project: set clouds.gcp.project_id in the spec or the app "
                                 f"setting {ControlPlaneSetting.GCP_PROJECT}")
        return project

    def gcp_client(self, client_cls: type) -> Any:
        """A GAPIC client (`functions_v2.FunctionServiceClient`, `scheduler_v1.CloudSchedulerClient`, ...)
        over REST, pointed at the sandbox's REST endpoint when there is one."""
        kwargs: dict[str, Any] = {"transport": "rest", "credentials": self.gcp_credentials()}
        if self.is_sandbox:
            kwargs["client_options"] = {"api_endpoint": str(self._gcp("api_endpoint"))}
        return client_cls(**kwargs)

    def gcp_iam_admin(self) -> Any:
        """`iam_admin_v1.IAMClient`: service accounts and keys (the client has only gRPC transports)."""
        from google.cloud import iam_admin_v1

        if self.is_sandbox:
            import grpc
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            channel = grpc.insecure_channel(str(self._gcp("grpc_host")))
            return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        return iam_admin_v1.IAMClient(credentials=self.gcp_credentials())

    def gcp_storage(self, project: str) -> Any:
        """`google.cloud.storage.Client` for `project` (the sandbox's storage endpoint locally)."""
        from google.cloud import storage

        if self.is_sandbox:
            return storage.Client(project=project, credentials=self.gcp_credentials(),
                                  client_options={"api_endpoint": str(self._gcp("storage_emulator_host"))})
        return storage.Client(project=project, credentials=self.gcp_credentials())

    def _gcp(self, key: str) -> Any:
        gcp = self.endpoints.get("gcp") or {}
        if key not in gcp:
            raise PermanentError(f"the sandbox's endpoints.json lacks gcp.{key} (was it started with --no-gcp?)")
        return gcp[key]

    # --- Event Grid ----------------------------------------------------------------------

    def event_grid_publisher(self, endpoint: str, key: str | None) -> Any:
        """`EventGridPublisherClient` for a topic endpoint: an access key if given, else the identity."""
        from azure.core.credentials import AzureKeyCredential
        from azure.eventgrid import EventGridPublisherClient

        if not key and endpoint.startswith("http://"):
            # A local webhook (this app on the local host): bearer tokens are refused over plain
            # HTTP by azure-core, and the webhook authenticates by its `code` query parameter.
            key = "local-webhook"
        credential: Any = AzureKeyCredential(key) if key else self.azure_credential()
        kwargs = self.azure_client_kwargs() if endpoint.startswith("https") else {}
        return EventGridPublisherClient(endpoint, credential, **kwargs)

    # --- Blob (the control plane's bundle store) -----------------------------------------

    def blob_container(self, container_url: str) -> Any:
        """`ContainerClient` for one of the control plane's blob containers: with its identity on
        Azure; in the sandbox with the Azurite account's shared key (Azurite speaks OAuth only
        over HTTPS, and the sandbox serves Blob over plain HTTP on 127.0.0.1)."""
        from azure.storage.blob import ContainerClient

        if not self.is_sandbox:
            return ContainerClient.from_container_url(container_url, credential=self.azure_credential())
        blob = self.endpoints.get("blob") or {}
        fields = dict(part.split("=", 1) for part in str(blob.get("connection_string", "")).split(";") if "=" in part)
        if not fields.get("AccountName") or not fields.get("AccountKey"):
            raise PermanentError("the sandbox runs without Blob (started with --no-blob): no bundle store")
        credential = {"account_name": fields["AccountName"], "account_key": fields["AccountKey"]}
        return ContainerClient.from_container_url(container_url, credential=credential)

    def bundle_container_url(self) -> str | None:
        """Where bundles are kept (`TWIN_BUNDLE_CONTAINER_URL`), or None when not configured."""
        value = self.environ.get(ControlPlaneSetting.BUNDLE_CONTAINER_URL, "").strip()
        return value or None

    # --- Key Vault -----------------------------------------------------------------------

    def secret_client(self, vault_url: str) -> Any:
        """`SecretClient` for the control plane's vault. A sandbox vault lives on 127.0.0.1, whose
        name cannot match the challenge's `vault.azure.net` resource, so that check is skipped there."""
        from azure.keyvault.secrets import SecretClient

        kwargs = self.azure_client_kwargs()
        if self.is_sandbox:
            kwargs["verify_challenge_resource"] = False
        return SecretClient(vault_url, self.azure_credential(), **kwargs)

    def ssl_context(self) -> Any:
        """An `ssl.SSLContext` for plain HTTPS clients (urllib): the system's CAs, plus the
        sandbox's local CA when pointed at the sandbox."""
        import ssl

        return ssl.create_default_context(cafile=str(self._azure("ca_file")) if self.is_sandbox else None)

    def per_call_kwargs(self, url: str) -> dict[str, Any]:
        """Per-request options for clients that drop client-level transport options: azure-eventgrid
        4.x ignores `connection_verify` given to `EventGridPublisherClient`, so it goes on `send`."""
        if self.is_sandbox and url.startswith("https"):
            return {"connection_verify": str(self._azure("ca_file"))}
        return {}

    def _azure(self, key: str) -> Any:
        azure = self.endpoints.get("azure") or {}
        if key not in azure:
            raise PermanentError(f"the sandbox's endpoints.json lacks azure.{key}")
        return azure[key]


class ManagedIdentityTokenSupplier:
    """A `google.auth.identity_pool.SubjectTokenSupplier`: the control plane's Entra token for
    `audience` (its managed identity on Azure), cached until shortly before it expires (the Google
    credential asks on every refresh)."""

    def __init__(self, credential: Any, audience: str) -> None:
        self.credential = credential
        self.scope = audience.rstrip("/") + "/.default"
        self._token: Any = None

    def get_subject_token(self, context: Any, request: Any) -> str:
        import time

        token = self._token
        if token is None or token.expires_on - 300 <= time.time():
            token = self._token = self.credential.get_token(self.scope)
        return str(token.token)


DEFAULT_AWS_AUDIENCE = AZURE_TOKEN_EXCHANGE_AUDIENCE
_web_identity_sessions: dict[tuple[str, str, str], Any] = {}
_sessions_lock = threading.Lock()


def _claim(token: str, name: str) -> str:
    """One claim of a JWT, unverified (the token was just issued to us)."""
    import base64

    try:
        payload = token.split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get(name)
    except (IndexError, ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise PermanentError(f"the identity's token carries no '{name}' claim")
    return value


def _assume_role_session(clouds: Clouds, role_arn: str, audience: str, sts_endpoint: str) -> Any:
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleWithWebIdentityCredentialFetcher,
        CredentialProvider,
        DeferredRefreshableCredentials,
    )

    credential = clouds.azure_credential()
    scope = audience.rstrip("/") + "/.default"

    def token() -> str:
        return str(credential.get_token(scope).token)

    core = botocore.session.Session()

    def sts_client(service: str, **kwargs: Any) -> Any:
        if sts_endpoint:
            kwargs.update(endpoint_url=sts_endpoint, region_name=kwargs.get("region_name") or "us-east-1",
                          verify=clouds.endpoints.get("azure", {}).get("ca_file") if sts_endpoint.startswith("https")
                          else None)
        return core.create_client(service, **kwargs)

    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=sts_client, web_identity_token_loader=token, role_arn=role_arn,
        extra_args={"RoleSessionName": "twin-control-plane"})

    class WebIdentityProvider(CredentialProvider):  # type: ignore[misc]
        METHOD = "assume-role-with-web-identity"

        def load(self) -> Any:
            return DeferredRefreshableCredentials(method=self.METHOD, refresh_using=fetcher.fetch_credentials)

    # The only provider: no stored key anywhere is ever picked up instead.
    core.register_component("credential_provider", _only(WebIdentityProvider()))
    return boto3.Session(botocore_session=core)


def _only(provider: Any) -> Any:
    from botocore.credentials import CredentialResolver

    return CredentialResolver(providers=[provider])


@functools.cache
def _default_gcp_project() -> str | None:
    """The project of Application Default Credentials, looked up once per process."""
    import google.auth

    _, project = google.auth.default(scopes=list(GCP_SCOPES))
    return str(project) if project else None


def clouds_from_environ(environ: dict[str, str] | None = None) -> Clouds:
    """The seam for the current process: sandbox if `TWIN_SANDBOX_DIR` is set, else the real clouds."""
    env = dict(os.environ if environ is None else environ)
    sandbox_dir = env.get(SANDBOX_DIR_SETTING, "").strip()
    if not sandbox_dir:
        return Clouds(environ=env)
    return Clouds(endpoints=_sandbox_endpoints(Path(sandbox_dir) / "endpoints.json"), environ=env)


_endpoints_lock = threading.Lock()
_endpoints_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def _sandbox_endpoints(path: Path) -> dict[str, Any]:
    """A sandbox's endpoints.json, parsed again only when the file changed (a restarted sandbox
    rewrites it): every activity asks for the seam several times, and a file read and parse each
    time showed in the profiles of a deployment."""
    try:
        stat = path.stat()
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with _endpoints_lock:
            cached = _endpoints_cache.get(path)
        if cached is not None and cached[0] == version:
            return dict(cached[1])
        endpoints = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PermanentError(f"{SANDBOX_DIR_SETTING}: cannot read {path}: {exc}") from exc
    if not isinstance(endpoints, dict):
        raise PermanentError(f"{SANDBOX_DIR_SETTING}: {path} is not a JSON object")
    with _endpoints_lock:
        _endpoints_cache[path] = (version, endpoints)
    return dict(endpoints)
