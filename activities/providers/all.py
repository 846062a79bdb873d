"""Import (and so register) every real provider: `control`, then each cloud package.

A cloud package that does not exist yet is skipped (clouds are added issue by issue); an error
inside an existing package is raised, never hidden.
"""

from __future__ import annotations

import importlib

PACKAGES = ("activities.providers.control", "activities.providers.azure", "activities.providers.aws")

for _name in PACKAGES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
