"""Test servers for the GCP payload functions.

- `function_app`: a Cloud Function package's entry point as functions-framework serves it
  (`create_app` over the generated `main.py`).
- `ServedFunction`: that app on 127.0.0.1 in a thread; a private one first checks the caller's
  OIDC ID token (signature, issuer, `aud` = its own URL), as Cloud Run does before a private
  service runs (`roles/run.invoker`).
- `TokenIssuer`: the OAuth 2.0 token endpoint of a service account key's `token_uri` (JWT-bearer
  grant with `target_audience` -> `{"id_token"}`), so google-auth's real
  `fetch_id_token_credentials` gets ID tokens through GOOGLE_APPLICATION_CREDENTIALS; and the
  metadata server's identity endpoint (`Metadata-Flavor: Google`), which a deployed function's
  google-auth reaches through GCE_METADATA_HOST / GCE_METADATA_IP.
- `storage_emulator`: gcp-storage-emulator (the maintained Cloud Storage emulator) on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from payload_functions.packaging import cloud_function_main_source, entry_point
from shared.contracts import Function

SERVICE_ACCOUNT = "twin-functions@test-project.iam.gserviceaccount.com"
ISSUER = "https://accounts.google.com"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def function_app(fn: Function, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Flask app functions-framework builds for `fn`'s package entry point."""
    import functions_framework

    # create_app records its target and signature type in the environment: keep that per test.
    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "FUNCTION_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    source = folder / f"{entry_point(fn)}_main.py"
    source.write_text(cloud_function_main_source(fn))
    return functions_framework.create_app(target=entry_point(fn), source=str(source))


class TokenIssuer:
    """Signs ID tokens with a test service account key and serves the token endpoints."""

    def __init__(self, folder: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = uuid.uuid4().hex
        self.issued: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        self.key_file = folder / "service-account.json"
        self.key_file.write_text(json.dumps({
            "type": "service_account", "project_id": "test-project", "private_key_id": self.key_id,
            "private_key": pem, "client_email": SERVICE_ACCOUNT, "client_id": "1",
            "token_uri": f"{self.url}/token",
        }))
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TokenIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def _signer(self) -> Any:
        from google.auth import crypt

        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return crypt.RSASigner.from_string(pem, key_id=self.key_id)

    def _certificate(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def id_token(self, audience: str) -> str:
        from google.auth import jwt

        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "sub": "1", "email": SERVICE_ACCOUNT, "iat": now, "exp": now + 3600}
        token = jwt.encode(self._signer(), claims).decode()
        self.issued.append(audience)
        return token

    def audience_of(self, authorization: str | None) -> str | None:
        """The verified `aud` of a `Bearer` ID token this issuer signed, else None."""
        from google.auth import exceptions, jwt

        if not authorization or not authorization.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(authorization[len("Bearer "):], certs=self._certificate(), verify=True)
        except (ValueError, exceptions.GoogleAuthError):
            return None
        return str(claims["aud"]) if claims.get("iss") == ISSUER else None

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        from google.auth import exceptions, jwt

        request = WerkzeugRequest(environ)
        if request.path == "/token" and request.method == "POST":
            # RFC 7523 JWT-bearer grant, as google-auth's service account IDTokenCredentials sends it
            # (its assertion's `aud` is Google's token endpoint whatever the key's token_uri).
            assertion = request.form.get("assertion", "")
            try:
                claims = jwt.decode(assertion, certs=self._certificate(), verify=True, audience=GOOGLE_TOKEN_ENDPOINT)
            except (ValueError, exceptions.GoogleAuthError):
                return WerkzeugResponse(json.dumps({"error": "invalid_grant"}), 400,
                                        content_type="application/json")(environ, start_response)
            body = {"id_token": self.id_token(str(claims["target_audience"]))}
            return WerkzeugResponse(json.dumps(body), content_type="application/json")(environ, start_response)
        # The metadata server: every answer carries Metadata-Flavor, requests must send it.
        headers = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return WerkzeugResponse("Missing Metadata-Flavor:Google header.", 403, headers)(environ, start_response)
        if request.path in ("", "/"):
            return WerkzeugResponse("", 200, headers)(environ, start_response)
        if request.path == "/computeMetadata/v1/instance/service-accounts/default/":
            account = {"aliases": ["default"], "email": SERVICE_ACCOUNT,
                       "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
            return WerkzeugResponse(json.dumps(account), 200, headers, content_type="application/json")(
                environ, start_response)
        if request.path == "/computeMetadata/v1/instance/service-accounts/default/identity":
            audience = request.args.get("audience")
            if not audience:
                return WerkzeugResponse("audience required", 400, headers)(environ, start_response)
            return WerkzeugResponse(self.id_token(audience), 200, headers, content_type="text/plain")(
                environ, start_response)
        return WerkzeugResponse("not found", 404, headers)(environ, start_response)


class ServedFunction:
    """A functions-framework app on 127.0.0.1; `private` ones admit only ID tokens for their URL."""

    def __init__(self, app: Any, issuer: TokenIssuer | None = None) -> None:
        self.app = app
        self.issuer = issuer
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list[dict[str, Any]] = []
        self.refused = 0
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.issuer is not None:
            audience = self.issuer.audience_of(environ.get("HTTP_AUTHORIZATION"))
            if audience != self.url:
                self.refused += 1
                body = json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED"}})
                return WerkzeugResponse(body, 403, content_type="application/json")(environ, start_response)
        self.calls.append({"path": environ.get("PATH_INFO")})
        return self.app(environ, start_response)

    def start(self) -> ServedFunction:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@contextmanager
def served(app: Any, issuer: TokenIssuer | None = None) -> Iterator[ServedFunction]:
    server = ServedFunction(app, issuer).start()
    try:
        yield server
    finally:
        server.stop()


def pubsub_event(data: Any, attributes: dict[str, str] | None = None, topic: str = "projects/p/topics/t-telemetry",
                 raw: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the binary-mode CloudEvent Eventarc POSTs for one Pub/Sub message."""
    payload = raw if raw is not None else json.dumps(data).encode()
    message_id = uuid.uuid4().hex[:12]
    body = {"subscription": "projects/p/subscriptions/eventarc-t-dispatcher",
            "message": {"data": base64.b64encode(payload).decode(), "attributes": attributes or {},
                        "messageId": message_id, "publishTime": "2025-01-31T12:00:00.000Z"}}
    headers = {"ce-id": message_id, "ce-source": f"//pubsub.googleapis.com/{topic}", "ce-specversion": "1.0",
               "ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "ce-time": "2025-01-31T12:00:00.000Z",
               "Content-Type": "application/json"}
    return headers, json.dumps(body).encode()


@contextmanager
def storage_emulator() -> Iterator[str]:
    """gcp-storage-emulator in memory; yields its `http://127.0.0.1:PORT` (STORAGE_EMULATOR_HOST)."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
