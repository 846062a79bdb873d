"""CLI commands (local tooling; not deployed to Azure)."""
