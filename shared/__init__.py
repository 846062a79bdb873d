"""Pure code importable everywhere (deployer, payload functions, tests).

No cloud SDK is imported at module level here: the Function App must start fast.
"""
