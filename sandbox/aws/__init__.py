"""AWS side of the sandbox: moto's server behind our proxy, plus TwinMaker and Managed Grafana.

Client configuration (boto3): `endpoint_url` from endpoints.json, any access key/secret,
`region_name` from endpoints.json, and for IoT TwinMaker also
`config=Config(inject_host_prefix=False)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.aws.sandbox import AwsSandbox

__all__ = ["AwsSandbox"]


def __getattr__(name: str) -> Any:
    # Lazy: importing moto takes seconds, and sandbox.blob only needs the proxy helpers.
    if name == "AwsSandbox":
        from sandbox.aws.sandbox import AwsSandbox

        return AwsSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
