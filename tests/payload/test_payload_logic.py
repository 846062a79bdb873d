"""Pure logic of the payload functions: event rules, ADT patches, chunking, TwinMaker shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from payload_functions.common.adt import build_patch, declared_properties, extended_models
from payload_functions.common.errors import BadRequest
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.core.events import Ref, check, compare, parse
from payload_functions.core.movers import chunks
from payload_functions.core.readers import device_of, encode_value
from shared.contracts import Setting


def test_conditions_parse_like_the_spec_validator() -> None:
    assert parse("room-1.s1.temperature > DOUBLE(30)") == (Ref("room-1", "s1", "temperature"), ">", 30.0)
    assert parse("INTEGER(5) < a.b.c") == (5, "<", Ref("a", "b", "c"))
    assert parse("a.b.state == STRING(x > y)") == (Ref("a", "b", "state"), "==", "x > y")
    for bad in ("a.b.c >= DOUBLE(1)", "a.b.c", "a.b > DOUBLE(1)", "a.b.c > FLOAT(1)"):
        with pytest.raises(ValueError):
            parse(bad)
    assert compare(1, "<", 2) and compare(2, ">", 1) and compare("x", "==", "x")
    assert not compare("x", "<", 1)  # incomparable types never fire


def test_event_rules_use_the_reading_then_live_values_and_skip_unknowns() -> None:
    rules = [
        {"condition": "room.s1.temperature > DOUBLE(30)", "action": {"type": "lambda", "functionName": "hot"}},
        {"condition": "room.s1.temperature > machine.m1.limit", "action": {"type": "lambda", "functionName": "cmp"}},
        {"condition": "room.s1.humidity > DOUBLE(1)", "action": {"type": "lambda", "functionName": "unknown"}},
        {"condition": "room.s2.temperature > DOUBLE(0)", "action": {"type": "lambda", "functionName": "other"}},
        {"condition": "garbage", "action": {}},
    ]
    env = {str(Setting.EVENT_RULES): json.dumps(rules)}
    fired: list[str] = []
    live = {Ref("machine", "m1", "limit"): 40}
    out = check({"device_id": "s1", "timestamp": "2025-01-01T00:00:00Z", "temperature": 35},
                Settings({Setting.EVENT_RULES}, env), lambda ref: live.get(ref),
                lambda rule, reading: fired.append(rule["action"]["functionName"]))
    assert fired == ["hot"]
    assert out == {"fired": ["room.s1.temperature > DOUBLE(30)"],
                   "skipped": ["room.s1.humidity > DOUBLE(1)", "garbage"]}
    with pytest.raises(InvalidSetting, match="EVENT_RULES"):
        check({"device_id": "s1"}, Settings({Setting.EVENT_RULES}, {str(Setting.EVENT_RULES): "{}"}),
              lambda r: None, lambda r, x: None)


def test_adt_patch_only_touches_declared_last_properties() -> None:
    model = {"contents": [{"@type": "Telemetry", "name": "temperature"},
                          {"@type": ["Property", "Temperature"], "name": "lastTemperature"},
                          {"@type": "Property", "name": "name"}, {"@type": "Relationship", "name": "rel"}],
             "extends": ["dtmi:a;1"]}
    assert declared_properties(model) == {"lastTemperature", "name"}
    assert extended_models(model) == ["dtmi:a;1"] and extended_models({"extends": "dtmi:b;1"}) == ["dtmi:b;1"]
    ops, skipped = build_patch({"temperature": 1.5, "pressure": 2, "name": "x"}, {"lastTemperature"})
    assert ops == [{"op": "add", "path": "/lastTemperature", "value": 1.5}]
    assert skipped == ["name", "pressure"]


def test_chunks_respect_the_size_limit_and_keep_order() -> None:
    items: list[dict[str, Any]] = [{"device_id": "d", "timestamp": f"{i:04d}", "v": "x" * 50} for i in range(100)]
    parts = chunks(items, limit=1000)
    assert [i for part in parts for i in part] == items
    assert all(len(json.dumps(p, separators=(",", ":"))) <= 1000 for p in parts) and len(parts) > 5
    huge = [{"v": "y" * 5000}]
    assert chunks(huge, limit=1000) == [huge]  # one oversized reading still moves, alone


def test_twinmaker_device_resolution_and_value_types() -> None:
    assert device_of({"properties": {"iotDeviceId": {"value": {"stringValue": "dev"}}}}, "t") == "dev"
    assert device_of({"componentTypeId": "t-dev-2", "componentName": "c"}, "t") == "dev-2"
    assert device_of({"componentTypeId": "other", "componentName": "c"}, "t") == "c"
    with pytest.raises(BadRequest):
        device_of({}, "t")
    assert encode_value(1, "DOUBLE") == {"doubleValue": 1.0}
    assert encode_value("3", "INTEGER") == {"integerValue": 3}
    assert encode_value("abc", "DOUBLE") == {"stringValue": "abc"}
    assert encode_value(True, None) == {"booleanValue": True}
    assert encode_value(2.5, None) == {"doubleValue": 2.5}
