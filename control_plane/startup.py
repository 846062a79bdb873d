"""Checks the Function App makes when it starts (`function_app.py` calls them on import).

Without `TWIN_KEY_VAULT_URL` secret outputs (the inter-cloud token, storage keys, device private
keys) are kept inline in Durable's history and state, readable through its management API. On
Azure (App Service sets `WEBSITE_INSTANCE_ID`) the app refuses to start that way unless
`TWIN_ALLOW_INLINE_SECRETS=true` says it is meant; elsewhere it warns. Refusing at import is how a
Python function app refuses to start: the worker reports the error and indexes no function.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from shared.contracts import ControlPlaneSetting

log = logging.getLogger("control_plane.startup")

ON_AZURE = "WEBSITE_INSTANCE_ID"


class StartupError(RuntimeError):
    """The app must not start with these settings; the message says which and why."""


def check_vault_setting(environ: Mapping[str, str] | None = None) -> str | None:
    """None when a vault is configured; else the warning given (raises on Azure unless opted out)."""
    env = os.environ if environ is None else environ
    if (env.get(ControlPlaneSetting.KEY_VAULT_URL) or "").strip():
        return None
    state = "is empty" if ControlPlaneSetting.KEY_VAULT_URL in env else "is not set"
    problem = (f"{ControlPlaneSetting.KEY_VAULT_URL} {state}: secret outputs (inter-cloud token, storage keys, "
               "device private keys) will be kept inline in Durable's history and state")
    opted_out = (env.get(ControlPlaneSetting.ALLOW_INLINE_SECRETS) or "").strip().lower() == "true"
    if env.get(ON_AZURE) and not opted_out:
        raise StartupError(f"{problem}; set it to the control plane's Key Vault, or set "
                           f"{ControlPlaneSetting.ALLOW_INLINE_SECRETS}=true to start anyway")
    log.warning("%s; set it to a Key Vault URL outside local experiments", problem)
    return problem
