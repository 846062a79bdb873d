"""Hypothesis: whatever arrives as an HTTP body or a file, the loaders raise SpecError or return
a spec, never anything else; and valid provider placements validate clean."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_helpers import EXAMPLE_NAMES, example_dict

from shared.loaders import load_spec, spec_from_dict
from shared.spec import TwinSpec
from shared.validation import ConditionError, Problem, SpecError, parse_condition

SECTIONS = ["twin", "providers", "devices", "hierarchy", "events", "clouds", "options"]
KEYS = st.sampled_from(
    SECTIONS
    + ["name", "id", "properties", "dataType", "azure", "aws", "models", "twins", "$dtId", "@id", "type", "children",
       "layer_1_provider", "condition", "action", "client_secret", "token", "hot_storage_days"]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["aws", "azure", "gcp", "google", "DOUBLE", "Interface", "dtmi:a:B;1", "entity", "component"])
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


def _check(data: object) -> None:
    try:
        spec = spec_from_dict(data)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert isinstance(problem, Problem)
            assert isinstance(problem.path, str) and isinstance(problem.message, str) and problem.message
        return
    assert isinstance(spec, TwinSpec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSONISH)
def test_garbage_only_raises_spec_error(data: object) -> None:
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={s: JSONISH for s in SECTIONS}))
def test_garbage_sections_only_raise_spec_error(data: dict[str, Any]) -> None:
    _check(data)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


EXAMPLE_DOCS = {name: example_dict(name) for name in EXAMPLE_NAMES}


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(EXAMPLE_DOCS[draw(st.sampled_from(EXAMPLE_NAMES))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSONISH)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples())
def test_mutated_examples_only_raise_spec_error(doc: Any) -> None:
    _check(doc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | JSONISH.map(lambda v: repr(v).encode()))
def test_random_files_only_raise_spec_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "twin.json"
    path.write_bytes(content)
    try:
        load_spec(path)
    except SpecError as exc:
        assert exc.problems


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="abc.()<>=!- DOUBLEINTGRS0123", max_size=40))
def test_conditions_parse_or_raise_condition_error(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ConditionError as exc:
        assert str(exc)
        return
    assert parse_condition(str(condition)) == condition


SLOTS = ["layer_1_provider", "layer_2_provider", "layer_3_hot_provider", "layer_3_cold_provider",
         "layer_3_archive_provider", "layer_4_provider", "layer_5_provider"]


def test_every_provider_placement_of_the_mixed_example() -> None:
    """3^7 placements: valid exactly when L4 and L5 are not on gcp; otherwise the only problems
    are on those two slots."""
    base = example_dict("mixed")  # carries both hierarchies, so any L4 has its hierarchy
    for combo in itertools.product(("aws", "azure", "gcp"), repeat=7):
        doc = copy.deepcopy(base)
        doc["providers"] = dict(zip(SLOTS, combo, strict=True))
        bad = {f"providers.{s}" for s, p in zip(SLOTS, combo, strict=True) if p == "gcp" and s in ("layer_4_provider", "layer_5_provider")}
        try:
            spec_from_dict(doc)
        except SpecError as exc:
            assert {p.path for p in exc.problems} == bad, (combo, exc.problems)
        else:
            assert not bad, combo
