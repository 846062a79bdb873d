"""Grafana's datasource API as both clouds' Managed Grafana expose it: what the hot-reader
datasource should look like and whether a write is needed. The token goes in `secureJsonData`,
which Grafana never returns, so its fingerprint in `jsonData` tells whether it changed."""

from __future__ import annotations

from typing import Any

from activities.providers.control import fingerprint as token_hash
from shared.contracts import INTER_CLOUD_TOKEN_HEADER


def datasource_body(name: str, url: str | None, token: str | None, kind: str, access: str,
                    current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The datasource as wanted from what is known now. The URL is late-bound (propagation sets it
    when the reader is deployed); what is not known yet keeps its current value."""
    have = current or {}
    json_data = {**dict(have.get("jsonData") or {}), "httpHeaderName1": INTER_CLOUD_TOKEN_HEADER}
    body: dict[str, Any] = {"name": name, "type": kind, "access": access, "isDefault": False,
                            "url": url if url is not None else str(have.get("url") or "")}
    if token:
        json_data["tokenSha256"] = token_hash(token)
        # Grafana keeps a secure field it is not sent: only a new token is written.
        body["secureJsonData"] = {"httpHeaderValue1": token}
    body["jsonData"] = json_data
    return body


def needs_write(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if current is None:
        return True
    if any(current.get(key) != wanted[key] for key in ("type", "access", "url")):
        return True
    have = current.get("jsonData") or {}
    return any(have.get(k) != v for k, v in wanted["jsonData"].items())
