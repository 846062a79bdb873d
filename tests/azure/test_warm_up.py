"""The app's warm-up creates every management client the Azure kinds use, without calling a cloud."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from activities.providers.azure import _common
from activities.providers.azure._common import warm_up

PROVIDERS = Path(_common.__file__).parent


def test_warm_up_creates_every_client_the_kinds_use_and_calls_no_cloud(sandbox: Any) -> None:
    used = {name for source in PROVIDERS.glob("*.py")
            for name in re.findall(r"\bmgmt\(([A-Z]\w+)", source.read_text())}
    assert "WebSiteManagementClient" in used
    mark = sandbox.seq()
    _common._client_cache.clear()
    warm_up()
    assert used <= {client for _, _, client in _common._client_cache}
    assert sandbox.requests(mark) == []
