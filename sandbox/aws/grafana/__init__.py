"""Amazon Managed Grafana stand-in (moto has no backend for it)."""
