"""Kudu (the SCM site of a Function App) in the sandbox: zip deploy, OneDeploy publish, deployment
status, and the proxy from a site's default host name to its local Function host."""

from __future__ import annotations

from sandbox.arm.models import arm_backend
from sandbox.core.context import SandboxContext
from sandbox.kudu.urls import create_app

__all__ = ["create_app", "install"]


def install(ctx: SandboxContext) -> None:
    """Kudu's state lives in ARM's site records; make sure the store exists."""
    arm_backend(ctx)
