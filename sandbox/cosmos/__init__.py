"""Azure Cosmos DB (NoSQL API) data plane for the sandbox, in gateway mode as azure-cosmos uses it.

Mounted by the sandbox server at `/cosmos/`; an account created through ARM answers at its
`properties.documentEndpoint` = `https://127.0.0.1:PORT/cosmos/<account>/` (azure-cosmos keeps
the base path), with master-key auth checked against ARM's `listKeys` keys.
"""

from sandbox.core.context import SandboxContext
from sandbox.cosmos.models import Account, Container, CosmosBackend, CosmosError, Database
from sandbox.cosmos.urls import backend, create_app, install

__all__ = ["Account", "Container", "CosmosBackend", "CosmosError", "Database", "backend", "create_app", "install", "reset"]


def reset(ctx: SandboxContext) -> None:
    """Forget every account's data (the control endpoint's `POST /reset`; ARM's reset also deletes
    the accounts through the hooks)."""
    backend(ctx).reset()
