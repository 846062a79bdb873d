"""Event conditions: `A OP B`, parsed by `shared.validation.parse_condition`."""

from __future__ import annotations

import pytest

from shared.validation import Condition, ConditionError, Constant, Reference, parse_condition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "testEntityId.temperature-sensor-1.temperature == DOUBLE(30)",
            Condition(Reference("testEntityId", "temperature-sensor-1", "temperature"), "==", Constant("DOUBLE", 30.0)),
        ),
        ("a.b.c<INTEGER(5)", Condition(Reference("a", "b", "c"), "<", Constant("INTEGER", 5))),
        ("INTEGER(-5) > room_1.sensor_2.level", Condition(Constant("INTEGER", -5), ">", Reference("room_1", "sensor_2", "level"))),
        ("a.b.state == STRING(open)", Condition(Reference("a", "b", "state"), "==", Constant("STRING", "open"))),
        # A STRING literal may hold an operator or spaces; only the top-level operator splits.
        ("a.b.msg == STRING(x > y)", Condition(Reference("a", "b", "msg"), "==", Constant("STRING", "x > y"))),
        ("  a.b.c   >   DOUBLE( 1.5e2 )  ", Condition(Reference("a", "b", "c"), ">", Constant("DOUBLE", 150.0))),
        ("a.b.c == x.y.z", Condition(Reference("a", "b", "c"), "==", Reference("x", "y", "z"))),
    ],
)
def test_parse_valid_conditions(text: str, expected: Condition) -> None:
    condition = parse_condition(text)
    assert condition == expected
    assert parse_condition(str(condition)) == condition  # str() round-trips
    assert condition.references() == [o for o in (condition.left, condition.right) if isinstance(o, Reference)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("a.b.c", "has no comparison"),
        ("a.b.c >= DOUBLE(1)", "'>=', which is not supported"),
        ("a.b.c != DOUBLE(1)", "'!=', which is not supported"),
        ("a.b.c = DOUBLE(1)", "'=', which is not supported"),
        ("a.b.c =< DOUBLE(1)", "unknown operator '=<'"),
        ("a.b.c > DOUBLE(1) < DOUBLE(2)", "more than one comparison"),
        ("> DOUBLE(1)", "nothing on the left"),
        ("a.b.c ==", "nothing on the right"),
        ("a.b.c > DOUBLE(warm)", "DOUBLE needs a number"),
        ("a.b.c > DOUBLE(nan)", "finite number"),
        ("a.b.c > DOUBLE(inf)", "finite number"),
        ("a.b.c > INTEGER(1.5)", "INTEGER needs a whole number"),
        ("a.b.c > BOOL(1)", "unknown literal type 'BOOL'"),
        ("a.b > DOUBLE(1)", "is not a reference"),
        ("a.b.c.d > DOUBLE(1)", "is not a reference"),
        ("a b c > DOUBLE(1)", "is neither entity.component.property nor a literal"),
        ("DOUBLE(1) == DOUBLE(1)", "compares two literals"),
        ("30 < a.b.c", "is neither"),
    ],
)
def test_parse_invalid_conditions(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert message in str(info.value)


def test_non_string_is_rejected_plainly() -> None:
    with pytest.raises(ConditionError):
        parse_condition(None)  # type: ignore[arg-type]
