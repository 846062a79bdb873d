"""Azure Key Vault secrets data plane for the sandbox (what azure-keyvault-secrets 4.x sends).

Mounted by the sandbox server at `/keyvault/`; a vault created through ARM
(`Microsoft.KeyVault/vaults`) answers at its `properties.vaultUri` =
`https://127.0.0.1:PORT/keyvault/<vault>/`. Clients pass `verify_challenge_resource=False`
(127.0.0.1 is not under `vault.azure.net`) and the sandbox CA as `connection_verify`.
"""

from sandbox.core.context import SandboxContext
from sandbox.keyvault.models import KeyVaultBackend, KeyVaultError, Vault
from sandbox.keyvault.urls import backend, create_app, install

__all__ = ["KeyVaultBackend", "KeyVaultError", "Vault", "backend", "create_app", "install", "reset"]


def reset(ctx: SandboxContext) -> None:
    """Drop every vault's data (the control endpoint's `POST /reset`; ARM's reset also deletes the
    vaults through the hooks)."""
    backend(ctx).reset()
