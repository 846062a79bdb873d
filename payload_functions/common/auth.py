"""Inter-cloud token check: constant-time, accepting the current and the previous token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from payload_functions.common.errors import Unauthorized
from shared.contracts import INTER_CLOUD_TOKEN_HEADER


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (Function URLs lower-case header names)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def token_matches(presented: str | None, accepted: Iterable[str]) -> bool:
    if not presented:
        return False
    given = presented.encode("utf-8")
    ok = False
    for token in accepted:
        # Compare against every accepted token (no early exit) so timing says nothing about which.
        ok = hmac.compare_digest(given, token.encode("utf-8")) | ok
    return ok


def check_token(headers: Mapping[str, str], accepted: Iterable[str]) -> None:
    """Raise 401 unless the request carries one of the accepted tokens."""
    if not token_matches(header(headers, INTER_CLOUD_TOKEN_HEADER), tuple(accepted)):
        raise Unauthorized()
