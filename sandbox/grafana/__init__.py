"""Azure Managed Grafana data plane for the sandbox: Grafana's datasource HTTP API.

Mounted by the sandbox server at `/grafana/`; a workspace created through ARM has
`properties.endpoint = https://127.0.0.1:PORT/grafana/<name>`, serving `/api/datasources` to
principals holding "Grafana Admin" on the workspace.
"""

from sandbox.core.context import SandboxContext
from sandbox.grafana.models import Datasource, GrafanaBackend, GrafanaError, Workspace
from sandbox.grafana.urls import backend, create_app, install

__all__ = ["Datasource", "GrafanaBackend", "GrafanaError", "Workspace", "backend", "create_app", "install", "reset"]


def reset(ctx: SandboxContext) -> None:
    """Forget every workspace's datasources (the control endpoint's `POST /reset`)."""
    backend(ctx).reset()
