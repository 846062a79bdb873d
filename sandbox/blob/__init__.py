"""Azure Blob for the sandbox: Azurite behind the shared recording proxy."""

from sandbox.blob.azurite import Azurite, AzuriteNotInstalled

__all__ = ["Azurite", "AzuriteNotInstalled"]
