"""Azure Digital Twins data plane (api-version 2023-10-31) for the sandbox.

Mounted by the sandbox server at `/digitaltwins-instances/`; an instance created through ARM
answers at `https://<hostName>` with `hostName = 127.0.0.1:PORT/digitaltwins-instances/<name>-<n>`.
"""

from sandbox.core.context import SandboxContext
from sandbox.digitaltwins.models import AdtError, DigitalTwinsBackend, Instance
from sandbox.digitaltwins.urls import backend, create_app, install

__all__ = ["AdtError", "DigitalTwinsBackend", "Instance", "backend", "create_app", "install", "reset"]


def reset(ctx: SandboxContext) -> None:
    """Drop every instance's data (for the control endpoint's `POST /reset`)."""
    backend(ctx).reset()
