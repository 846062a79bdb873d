"""Azure Resource Manager in the sandbox: a generic resource store, the three LRO styles, and the
specific actions the deployer calls (keys, app settings, publishing credentials, role assignments)."""

from __future__ import annotations

from sandbox.arm.models import ArmBackend, arm_backend
from sandbox.arm.urls import add_routes
from sandbox.core.context import SandboxContext

__all__ = ["ArmBackend", "add_routes", "arm_backend", "install"]


def install(ctx: SandboxContext) -> None:
    """Create the ARM store of `ctx` (idempotent)."""
    arm_backend(ctx)
