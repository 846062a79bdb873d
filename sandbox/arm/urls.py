"""ARM's routes on the shared Azure server: every path under `/subscriptions/` goes to one handler."""

from __future__ import annotations

from aiohttp import web

from sandbox.arm.responses import ArmHandler, is_operation_poll
from sandbox.core.context import SandboxContext
from sandbox.core.http import FAULT_EXEMPT_PREDICATE_KEY


def add_routes(root: web.Application, ctx: SandboxContext) -> None:
    """Mount ARM at the root of `root` (after the sub-apps, so their prefixes win)."""
    handler = ArmHandler(ctx)
    # ARM paths are case-insensitive; the SDKs send `/subscriptions/` in lower case.
    root.router.add_route("*", "/subscriptions/{tail:.*}", handler.handle)
    root.router.add_route("*", "/subscriptions", handler.handle)
    root[FAULT_EXEMPT_PREDICATE_KEY] = is_operation_poll
