"""The state of every GCP service in one object, reached by handlers through their app.

Services never import each other's handlers: a function's Eventarc trigger asks `pubsub` for a
subscription, Cloud Functions asks `iam` for invoker policies, the front doors ask `functions`
where a revision runs. They meet here, as the Azure services meet in `SandboxContext`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.gcp.iam.models import IamBackend
from sandbox.gcp.operations import Operations

if TYPE_CHECKING:
    from sandbox.gcp.firestore.models import FirestoreBackend
    from sandbox.gcp.functions.models import FunctionsBackend
    from sandbox.gcp.pubsub.models import PubSubBackend
    from sandbox.gcp.scheduler.models import SchedulerBackend
    from sandbox.gcp.storage.models import StorageBackend


@dataclass
class GcpBackends:
    ctx: SandboxContext
    iam: IamBackend
    operations: Operations = field(default_factory=Operations)
    # Set by GcpSandbox.start (they need the loop or each other).
    functions: FunctionsBackend = field(init=False)
    scheduler: SchedulerBackend = field(init=False)
    pubsub: PubSubBackend = field(init=False)
    firestore: FirestoreBackend = field(init=False)
    storage: StorageBackend = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None
    api_endpoint: str = ""
    storage_endpoint: str = ""
    grpc_host: str = ""


BACKENDS_KEY: web.AppKey[GcpBackends] = web.AppKey("gcp_backends", GcpBackends)


def backends(request: web.Request) -> GcpBackends:
    return request.app[BACKENDS_KEY]
