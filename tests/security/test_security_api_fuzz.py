"""Every route of the API fuzzed from its own OpenAPI document with schemathesis (issue 12): valid
and invalid parameters and bodies generated from the document, sent to the control plane on the
local host (fake providers: valid specs deploy for real, in milliseconds). No answer is a 5xx,
every 4xx has the error shape, every answer is one the document declares."""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from security_helpers import KEY, Engine, api_engine

from control_plane.openapi import document


def _fuzzable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without the spec's cross-field `allOf` (if/then on the providers), which the
    generator cannot build from; the server still enforces them, so they are fuzzed as data."""
    doc = copy.deepcopy(doc)
    doc["components"]["schemas"]["TwinSpec"].pop("allOf", None)
    return doc


@st.composite
def _zips(draw: st.DrawFn) -> bytes:
    """Bundles as a hostile caller sends them: zips with any entry names (`..`, absolute, control
    characters) and contents, a `twin.json` that may be anything, or bytes that are no zip at all."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in draw(st.lists(st.one_of(st.sampled_from(["twin.json", "config.json", "../x.py", "/abs.py",
                                                              "lambda_functions/processors/d/process.py"]),
                                            st.text(min_size=1, max_size=40)), max_size=5, unique=True)):
            archive.writestr(name, draw(st.binary(max_size=256)))
    return buffer.getvalue()


schemathesis.openapi.media_type("application/zip", _zips())
SCHEMA = schemathesis.openapi.from_dict(_fuzzable(document()))
EXAMPLES_PER_OPERATION = 30  # 8 operations; about a minute on a loaded 2-core machine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with api_engine(tmp_path_factory.mktemp("fuzz"), {"lock_wait_seconds": 1}) as running:
        yield running


def assert_error_shape(status: int, body: Any) -> None:
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], (status, body)
    for error in body["errors"]:
        assert set(error) == {"path", "message"}, error
        assert isinstance(error["path"], str) and isinstance(error["message"], str) and error["message"], error


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_route_answers_without_5xx_and_in_the_error_shape(case: Any, engine: Engine) -> None:
    response = case.call(base_url=engine.base, headers={"x-functions-key": KEY}, timeout=60)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])
    if 400 <= response.status_code < 500:
        assert_error_shape(response.status_code, response.json())
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])


@pytest.mark.parametrize("operation", [(m.upper(), p) for p, ops in document()["paths"].items() for m in ops])
def test_every_route_needs_a_key(engine: Engine, operation: tuple[str, str], tmp_path: Path) -> None:
    from security_helpers import http

    method, path = operation
    url = engine.base + path.replace("{twin}", "greenhouse").replace("{instanceId}", "twin:greenhouse:deploy:0")
    for headers in ({}, {"x-functions-key": "wrong"}):
        reply = http(method, url, raw=b"{}", headers=headers)
        assert reply.status == 401, (method, path, reply.status)
        assert_error_shape(401, reply.json())
