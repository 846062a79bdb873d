"""The sandbox's control endpoint (plain HTTP): request log, resources, reset, profile, hosts, rule runs."""

from sandbox.control.urls import create_app

__all__ = ["create_app"]
