"""The project's real providers, one package per cloud plus `control` (the control plane's own
resources). The registry's default module list (`TWIN_PROVIDER_MODULES`) names all four; this
file imports nothing, so a test can load `control` alone beside its own providers.
"""
