"""The public face of the twin control plane: HTTP API and event triggers (blueprints), CLI, local host."""
