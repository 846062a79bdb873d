"""Resource Manager: the sandbox's one project and its IAM policy (v3, and v1 for discovery clients)."""
