"""Google Cloud side of the sandbox (issue 15): Cloud Functions v2, Cloud Run service IAM, Cloud
Scheduler, IAM, Resource Manager, Pub/Sub, Firestore and Cloud Storage on 127.0.0.1.

Clients (from endpoints.json's "gcp"): REST clients take `transport="rest"`,
`credentials=AnonymousCredentials()` and `client_options={"api_endpoint": gcp["api_endpoint"]}`;
Pub/Sub and Firestore over gRPC read `PUBSUB_EMULATOR_HOST` / `FIRESTORE_EMULATOR_HOST`
(`gcp["pubsub_emulator_host"]`, `gcp["firestore_emulator_host"]`); Cloud Storage reads
`STORAGE_EMULATOR_HOST` (`gcp["storage_emulator_host"]`); `iam_admin_v1.IAMClient` takes a channel
to `gcp["grpc_host"]`. The project is `gcp["project_id"]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.gcp.sandbox import GcpSandbox

__all__ = ["GcpSandbox"]


def __getattr__(name: str) -> Any:
    if name == "GcpSandbox":
        from sandbox.gcp.sandbox import GcpSandbox

        return GcpSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
