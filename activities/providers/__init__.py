"""The project's real providers, one package per cloud plus `control` (the control plane's own
resources). `activities.providers.all` imports every one of them; that is the registry's default
module list (`TWIN_PROVIDER_MODULES`). This file imports nothing, so a test can load `control`
alone beside its own providers.
"""
