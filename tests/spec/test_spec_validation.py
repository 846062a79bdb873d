"""Semantic checks that need more than one edit of an example (the corpus covers single edits)."""

from __future__ import annotations

from typing import Any

import pytest
from spec_helpers import example_dict

from shared.loaders import spec_from_dict
from shared.naming import twin_name_problems
from shared.spec import TwinSpec
from shared.validation import Problem, SpecError, twin_name_rule_problems, validate_spec


def _problems(doc: dict[str, Any]) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        spec_from_dict(doc)
    return info.value.problems


def _model(model_id: str, contents: list[Any], **extra: Any) -> dict[str, Any]:
    return {"@id": model_id, "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": contents, **extra}


def _with_hierarchy(models: list[dict[str, Any]], twins: list[tuple[str, str]], rels: list[tuple[str, str, str]]) -> dict[str, Any]:
    doc = example_dict("azure-only")
    doc["hierarchy"] = {
        "azure": {
            "models": models,
            "twins": [{"$dtId": t, "$metadata": {"$model": m}} for t, m in twins],
            "relationships": [{"$dtId": s, "$relationshipName": n, "$targetId": t} for s, n, t in rels],
        }
    }
    return doc


def test_relationship_declared_on_an_extended_model_is_accepted() -> None:
    base = _model("dtmi:ex:Base;1", [{"@type": "Relationship", "name": "isPartOf", "target": "dtmi:ex:Site;1"}])
    site = _model("dtmi:ex:Site;1", [])
    room = _model("dtmi:ex:Room;1", [], extends="dtmi:ex:Base;1")
    # A Wing extends Site, so it is an acceptable target of isPartOf too.
    wing = _model("dtmi:ex:Wing;1", [], extends=["dtmi:ex:Site;1"])
    doc = _with_hierarchy(
        [base, site, room, wing],
        [("site", "dtmi:ex:Site;1"), ("room", "dtmi:ex:Room;1"), ("wing", "dtmi:ex:Wing;1")],
        [("room", "isPartOf", "site"), ("room", "isPartOf", "wing")],
    )
    # Relationships without $relationshipId get distinct derived ids, so both are fine.
    spec = spec_from_dict(doc)
    assert validate_spec(spec) == []


def test_relationship_derived_ids_collide() -> None:
    site = _model("dtmi:ex:Site;1", [{"@type": "Relationship", "name": "has"}])
    doc = _with_hierarchy([site], [("a", "dtmi:ex:Site;1"), ("b", "dtmi:ex:Site;1")], [("a", "has", "b"), ("a", "has", "b")])
    problems = _problems(doc)
    assert any(p.path == "hierarchy.azure.relationships[1]" and "already used" in p.message for p in problems)


def test_extends_cycle_is_reported_not_looped() -> None:
    a = _model("dtmi:ex:A;1", [], extends="dtmi:ex:B;1")
    b = _model("dtmi:ex:B;1", [{"@type": "Relationship", "name": "r"}], extends="dtmi:ex:A;1")
    doc = _with_hierarchy([a, b], [("x", "dtmi:ex:A;1")], [("x", "r", "x")])
    problems = _problems(doc)
    assert any(p.path == "hierarchy.azure.models[0].extends" and "cycle" in p.message for p in problems)
    assert any(p.path == "hierarchy.azure.models[1].extends" and "cycle" in p.message for p in problems)


@pytest.mark.parametrize(
    ("model", "path", "text"),
    [
        ("not a model", "hierarchy.azure.models[0]", "must be a JSON object"),
        ({"@id": 5, "@type": "Interface", "@context": "dtmi:dtdl:context;3"}, "hierarchy.azure.models[0].@id", "not a valid DTMI"),
        ({"@id": "dtmi:ex:A;1", "@type": ["Interface", "Extra"], "@context": ["dtmi:dtdl:context;3", "dtmi:x;1"]}, None, None),
        ({"@id": "dtmi:ex:A;1", "@type": "Interface", "@context": "http://schema.org"}, "hierarchy.azure.models[0].@context", "DTDL context"),
        ({"@id": "dtmi:ex:A;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": {}}, "hierarchy.azure.models[0].contents", "must be a list"),
        (_model("dtmi:ex:A;1", ["x"]), "hierarchy.azure.models[0].contents[0]", "JSON object"),
        (_model("dtmi:ex:A;1", [{"@type": "Property"}]), "hierarchy.azure.models[0].contents[0].name", "needs a name"),
        (_model("dtmi:ex:A;1", [{"name": "p"}]), "hierarchy.azure.models[0].contents[0].@type", "needs @type"),
        (_model("dtmi:ex:A;1", [{"@type": "Field", "name": "p"}]), "hierarchy.azure.models[0].contents[0].@type", "not a DTDL content type"),
        (_model("dtmi:ex:A;1", [{"@type": "Property", "name": "bad-name"}]), "hierarchy.azure.models[0].contents[0].name", "letters, digits and _"),
        (_model("dtmi:ex:A;1", [{"@type": "Relationship", "name": "r", "target": 3}]), "hierarchy.azure.models[0].contents[0].target", "must be a model id"),
        (_model("dtmi:ex:A;1", [], extends=[3]), "hierarchy.azure.models[0].extends[0]", "must name model ids"),
    ],
)
def test_dtdl_model_checks(model: Any, path: str | None, text: str | None) -> None:
    doc = _with_hierarchy([model], [], [])
    if path is None:
        assert validate_spec(spec_from_dict(doc)) == []
        return
    problems = _problems(doc)
    assert any(p.path == path and text and text in p.message for p in problems), problems


def test_twinmaker_component_checks() -> None:
    doc = example_dict("aws-only")
    doc["hierarchy"]["aws"].append(
        {"type": "entity", "id": "shed", "children": [{"type": "component", "children": [{"type": "entity", "id": "x"}]}]}
    )
    problems = _problems(doc)
    assert any(p.path == "hierarchy.aws[1].children[0]" and "needs iotDeviceId" in p.message for p in problems)
    assert any(p.path == "hierarchy.aws[1].children[0].children" and "cannot have children" in p.message for p in problems)


def test_device_id_problems_only_on_clouds_that_use_them() -> None:
    long_id = "soil-probe-with-a-rather-long-name-for-the-north-bed-1"
    azure = example_dict("azure-only")
    azure["devices"][1]["id"] = long_id
    azure["hierarchy"]["azure"]["twins"][2]["$dtId"] = long_id
    azure["hierarchy"]["azure"]["relationships"][1]["$targetId"] = long_id
    assert validate_spec(spec_from_dict(azure)) == []  # device ids enter no Azure resource name
    aws = example_dict("aws-only")
    aws["devices"][1]["id"] = long_id
    aws["hierarchy"]["aws"][0]["children"][1]["iotDeviceId"] = long_id
    problems = _problems(aws)
    assert {p.path for p in problems} == {"devices[1].id"}
    assert all("AWS" in p.message for p in problems)


def test_all_problems_reported_in_one_go() -> None:
    doc = example_dict("aws-to-azure")
    doc["twin"]["name"] = "bad_name"
    doc["twin"]["hot_storage_days"] = 100
    doc["providers"]["layer_5_provider"] = "gcp"
    doc["devices"][1]["id"] = doc["devices"][0]["id"]
    doc["hierarchy"]["azure"]["models"][0]["@id"] = "dtmi:bad-id;1"
    doc["events"][0]["condition"] = "nonsense"
    paths = {p.path for p in _problems(doc)}
    assert {
        "twin.name",
        "twin.hot_storage_days",
        "providers.layer_5_provider",
        "devices[1].id",
        "hierarchy.azure.models[0].@id",
        "events[0].condition",
    } <= paths


@pytest.mark.parametrize("name", ["x", "greenhouse", "Green-House", "a" * 15, "g_h", "g.h", "-gh", "gh-", "9gh", "a" * 40, "UPPER"])
@pytest.mark.parametrize("providers", [["azure"], ["aws"], ["gcp"], ["aws", "azure", "gcp"]])
def test_grouped_twin_name_rules_agree_with_naming(name: str, providers: list[str]) -> None:
    grouped = twin_name_rule_problems(name, providers)
    flat = twin_name_problems(name, providers)
    assert bool(grouped) == bool(flat)
    assert len(grouped) <= len(flat)


def test_validate_spec_on_constructed_model() -> None:
    spec = TwinSpec.model_validate(example_dict("mixed"))
    assert validate_spec(spec) == []
