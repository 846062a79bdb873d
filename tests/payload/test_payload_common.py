"""Runtime helpers: normalisation, envelope, token check, lazy settings, retrying POST."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from payload_helpers import ThreadedServer

from payload_functions.common.auth import check_token, token_matches
from payload_functions.common.envelope import build_envelope, unwrap
from payload_functions.common.errors import BadRequest, Unauthorized
from payload_functions.common.http import PostFailed, post_json
from payload_functions.common.settings import MissingSetting, Settings, UndeclaredSetting
from payload_functions.common.telemetry import normalise, parse_timestamp
from shared.contracts import INTER_CLOUD_TOKEN_HEADER, Envelope, Setting, Telemetry

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ID_KEYS = ("device_id", "iotDeviceId", "deviceId")
TIME_KEYS = ("timestamp", "time", "ts")

moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(5000, 1, 1), timezones=st.just(UTC))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))


def _time_forms(moment: datetime, offset: timedelta) -> st.SearchStrategy[object]:
    from datetime import timezone

    local = moment.astimezone(timezone(offset))
    return st.sampled_from([
        moment.isoformat(), moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), local.isoformat(),
        moment.replace(tzinfo=None).isoformat(), moment.timestamp(), round(moment.timestamp() * 1000),
        str(int(moment.timestamp())),
    ])


readings = st.builds(
    lambda id_key, time_key, device, when, extra: {id_key: device, time_key: when, **extra},
    st.sampled_from(ID_KEYS), st.sampled_from(TIME_KEYS), st.text(min_size=1, max_size=20),
    st.tuples(moments, offsets).flatmap(lambda t: _time_forms(*t)),
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(lambda k: k not in (*ID_KEYS, *TIME_KEYS, "id")),
                    st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5)), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(readings)
def test_any_accepted_reading_normalises_to_device_id_and_iso_timestamp(raw: dict[str, object]) -> None:
    reading = normalise(raw)
    assert set(reading) >= {Telemetry.DEVICE_ID, Telemetry.TIMESTAMP}
    assert ISO.fullmatch(reading[Telemetry.TIMESTAMP])
    assert not set(reading) & {"iotDeviceId", "deviceId", "time", "ts"}
    # Idempotent: normalising again changes nothing (storage keys are stable across hops).
    assert normalise(reading) == reading


@settings(max_examples=200, deadline=None)
# Epoch seconds and milliseconds are told apart at 1e11 (see telemetry): both forms are
# unambiguous from March 1973 to the year 5138.
@given(st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(UTC)))
def test_epoch_seconds_milliseconds_and_iso_agree(moment: datetime) -> None:
    moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
    iso = parse_timestamp(moment.isoformat())
    assert parse_timestamp(round(moment.timestamp() * 1000)) == iso
    assert parse_timestamp(moment.timestamp()) == iso


def test_normalise_examples() -> None:
    assert normalise({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 28}) == {
        "device_id": "s1", "timestamp": "2025-01-31T12:00:00.000Z", "temperature": 28}
    assert normalise({"deviceId": "s1", "ts": 1738324800})["timestamp"] == "2025-01-31T12:00:00.000Z"
    assert normalise({"deviceId": "s1", "ts": 1738324800123})["timestamp"] == "2025-01-31T12:00:00.123Z"
    assert normalise({"device_id": "s1", "timestamp": "2025-01-31T13:00:00+01:00"})["timestamp"] == "2025-01-31T12:00:00.000Z"
    assert normalise({"device_id": "s1"}, clock=lambda: "2025-01-01T00:00:00.000Z")["timestamp"] == "2025-01-01T00:00:00.000Z"


@pytest.mark.parametrize(("raw", "fragment"), [
    ([], "body: a reading must be a JSON object"),
    ({"temperature": 1}, "no device id"),
    ({"device_id": 5}, "must be text"),
    ({"device_id": "a", "time": "yesterday"}, "body.time: 'yesterday' is not ISO-8601"),
    ({"device_id": "a", "ts": True}, "body.ts"),
    ({"device_id": "a", "ts": float("inf")}, "finite"),
    ({"device_id": "a", "time": -5}, "before 1970"),
])
def test_bad_readings_name_the_path(raw: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as err:
        normalise(raw)
    assert err.value.status == 400
    assert fragment in err.value.message


def test_envelope_round_trip_and_raw_bodies() -> None:
    env = build_envelope({"device_id": "d"}, "aws", "L2")
    assert set(env) == {str(f) for f in Envelope}
    received = unwrap(json.loads(json.dumps(env)))
    assert received.payload == {"device_id": "d"}
    assert received.source_cloud == "aws"
    assert received.trace_id == env[Envelope.TRACE_ID]
    assert unwrap({"device_id": "d"}).payload == {"device_id": "d"}
    with pytest.raises(BadRequest):
        unwrap({"source_cloud": "aws", "payload": 5})


def test_token_check_accepts_current_and_previous_only() -> None:
    check_token({INTER_CLOUD_TOKEN_HEADER: "new"}, ("new", "old"))
    check_token({INTER_CLOUD_TOKEN_HEADER.lower(): "old"}, ("new", "old"))
    for headers in ({}, {INTER_CLOUD_TOKEN_HEADER: ""}, {INTER_CLOUD_TOKEN_HEADER: "nope"},
                    {INTER_CLOUD_TOKEN_HEADER: "new "}, {"Authorization": "new"}):
        with pytest.raises(Unauthorized):
            check_token(headers, ("new", "old"))
    assert not token_matches("ünï", ("new",))


def test_settings_are_lazy_declared_and_name_missing_ones() -> None:
    env = {str(Setting.INTER_CLOUD_TOKEN): "secret-value"}
    s = Settings({Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS, Setting.DYNAMODB_TABLE_NAME}, env)
    assert s.tokens() == ("secret-value",)
    with pytest.raises(MissingSetting) as err:
        s.require(Setting.DYNAMODB_TABLE_NAME)
    assert err.value.status == 500 and str(Setting.DYNAMODB_TABLE_NAME) in err.value.message
    with pytest.raises(UndeclaredSetting):
        s.optional(Setting.COSMOS_DB_KEY)
    env[str(Setting.INTER_CLOUD_TOKEN_PREVIOUS)] = "older"
    assert s.tokens() == ("secret-value", "older")


def test_bad_twin_info_is_a_clear_500_without_the_value() -> None:
    s = Settings({Setting.DIGITAL_TWIN_INFO}, {str(Setting.DIGITAL_TWIN_INFO): '{"twin_name": "x"}'})
    with pytest.raises(Exception) as err:
        s.twin_info()
    assert getattr(err.value, "status", None) == 500
    assert "DIGITAL_TWIN_INFO" in str(err.value) and "lacks" in str(err.value)


# -- retrying POST --------------------------------------------------------------------------


@pytest.fixture
def flaky() -> Iterator[tuple[ThreadedServer, list[int], list[dict[str, str]]]]:
    """POST /s/<a>,<b>,... answers the listed statuses in turn, then 200."""
    seen: list[dict[str, str]] = []
    plan: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        status = plan.pop(0) if plan else 200
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response({"error": "busy"} if status >= 400 else {"ok": True}, status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/s", handle)
    server = ThreadedServer(app).start()
    try:
        yield server, plan, seen
    finally:
        server.stop()


def test_post_retries_429_and_5xx_then_succeeds(flaky: tuple[ThreadedServer, list[int], list[dict[str, str]]]) -> None:
    server, plan, seen = flaky
    plan.extend([503, 429, 500])
    delays: list[float] = []
    result = post_json(f"{server.url}/s", {"a": 1}, token="tok", sleep=delays.append, retries=3, base_delay=0.01)
    assert result.status == 200 and result.body == {"ok": True}
    assert len(seen) == 4 and all(h[INTER_CLOUD_TOKEN_HEADER] == "tok" for h in seen)
    assert delays == [0.01, 0, 0.04]  # backoff, Retry-After honoured, backoff


def test_post_does_not_retry_other_4xx_and_hides_token_and_query(
    flaky: tuple[ThreadedServer, list[int], list[dict[str, str]]],
) -> None:
    server, plan, seen = flaky
    plan.extend([400])
    with pytest.raises(PostFailed) as err:
        post_json(f"{server.url}/s?code=function-key", {}, token="super-secret", sleep=lambda _: None)
    assert len(seen) == 1 and err.value.upstream_status == 400
    assert "super-secret" not in err.value.message and "function-key" not in err.value.message


def test_post_gives_up_after_bounded_retries(flaky: tuple[ThreadedServer, list[int], list[dict[str, str]]]) -> None:
    server, plan, seen = flaky
    plan.extend([503] * 10)
    with pytest.raises(PostFailed) as err:
        post_json(f"{server.url}/s", {}, sleep=lambda _: None, retries=2)
    assert len(seen) == 3 and "503" in err.value.message and err.value.status == 502


def test_post_retries_connection_failures_then_fails() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    with pytest.raises(PostFailed) as err:
        post_json(f"http://127.0.0.1:{port}/x", {}, sleep=delays.append, retries=2, base_delay=0.01, timeout=2)
    assert len(delays) == 2 and err.value.upstream_status is None
