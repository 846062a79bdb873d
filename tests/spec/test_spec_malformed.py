"""The malformed corpus (`malformed/cases.json`): each case edits a valid example and names the
problems it must yield, as path + message substring. Every case must raise SpecError, never
anything else, and no problem may echo a credential's value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spec_helpers import MALFORMED, edit, example_dict

from shared.loaders import spec_from_dict
from shared.validation import Problem, SpecError

CASES: list[dict[str, Any]] = json.loads(MALFORMED.read_text())


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c["name"] for c in CASES}) == len(CASES), "case names must be unique"


def _document(case: dict[str, Any]) -> Any:
    if "document" in case:
        return case["document"]
    return edit(example_dict(case["base"]), case)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_malformed_spec_reports_expected_problems(case: dict[str, Any]) -> None:
    document = _document(case)
    with pytest.raises(SpecError) as info:
        spec_from_dict(document)
    problems = info.value.problems
    assert problems and all(isinstance(p, Problem) for p in problems)
    rendered = "\n".join(str(p) for p in problems)
    for expected in case["expect"]:
        matching = [p for p in problems if p.path == expected["path"] and expected["message"] in p.message]
        assert matching, f"expected {expected['path']!r}: ...{expected['message']}... among:\n{rendered}"
    for problem in problems:
        assert problem.message and "Traceback" not in problem.message
        assert "pydantic" not in problem.message.lower()
        assert problem.to_json() == {"path": problem.path, "message": problem.message}
        # Secrets given inline are reported by key, never by value.
        for path, value in case.get("set", []):
            if path.startswith("clouds") and isinstance(value, str):
                assert value not in problem.message


def test_every_base_example_is_valid() -> None:
    # The corpus relies on each base being clean: any problem must come from the edit.
    for base in {c["base"] for c in CASES if "document" not in c}:
        spec_from_dict(example_dict(base))
