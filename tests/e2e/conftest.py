"""End-to-end tests: each module deploys one example into its own sandbox through a local
control plane (see `e2e_kit.py`) and sends it telemetry."""
