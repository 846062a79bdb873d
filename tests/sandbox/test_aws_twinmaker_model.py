"""Property test of the TwinMaker stand-in's entity tree against a plain reference model.

Random sequences of create / re-parent / delete (recursive or not) must keep the same tree as
the reference: no cycles, children listed under their parent, `hasChildEntities` right, and a
non-recursive delete of a parent refused. The HTTP path is covered in test_aws_twinmaker_grafana.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sandbox.aws.routing import AwsError, ValidationException
from sandbox.aws.twinmaker.models import ROOT, TwinMakerBackend
from sandbox.core.profiles import Faults

IDS = [f"e{i}" for i in range(8)]
WS = "ws"


class EntityTree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.backend = TwinMakerBackend("eu-central-1", Faults())
        self.backend.create_workspace(WS, {})
        self.parent: dict[str, str | None] = {}  # the reference: entity -> parent

    def _subtree(self, root: str) -> set[str]:
        out = {root}
        changed = True
        while changed:
            changed = False
            for e, p in self.parent.items():
                if p in out and e not in out:
                    out.add(e)
                    changed = True
        return out

    @rule(entity=st.sampled_from(IDS), parent=st.none() | st.sampled_from(IDS))
    def create(self, entity: str, parent: str | None) -> None:
        body = {"entityId": entity, "entityName": entity.upper()}
        if parent is not None:
            body["parentEntityId"] = parent
        if entity in self.parent or (parent is not None and parent not in self.parent):
            with pytest.raises(AwsError):
                self.backend.create_entity(WS, body)
            return
        self.backend.create_entity(WS, body)
        self.parent[entity] = parent

    @precondition(lambda self: bool(self.parent))
    @rule(data=st.data(), to_root=st.booleans())
    def reparent(self, data: st.DataObject, to_root: bool) -> None:
        entity = data.draw(st.sampled_from(sorted(self.parent)))
        if to_root:
            self.backend.update_entity(WS, entity, {"parentEntityUpdate": {"updateType": "DELETE"}})
            self.parent[entity] = None
            return
        new_parent = data.draw(st.sampled_from(sorted(self.parent)))
        update = {"parentEntityUpdate": {"updateType": "UPDATE", "parentEntityId": new_parent}}
        if new_parent in self._subtree(entity):
            with pytest.raises(ValidationException):
                self.backend.update_entity(WS, entity, update)
            return
        self.backend.update_entity(WS, entity, update)
        self.parent[entity] = new_parent

    @precondition(lambda self: bool(self.parent))
    @rule(data=st.data(), recursive=st.booleans())
    def delete(self, data: st.DataObject, recursive: bool) -> None:
        entity = data.draw(st.sampled_from(sorted(self.parent)))
        doomed = self._subtree(entity)
        if len(doomed) > 1 and not recursive:
            with pytest.raises(ValidationException):
                self.backend.delete_entity(WS, entity, recursive)
            return
        self.backend.delete_entity(WS, entity, recursive)
        for e in doomed:
            del self.parent[e]

    @invariant()
    def same_tree(self) -> None:
        listed = self.backend.list_entities(WS, {"maxResults": 200})["entitySummaries"]
        assert {e["entityId"]: e["parentEntityId"] for e in listed} == {
            e: (p or ROOT) for e, p in self.parent.items()
        }
        for e in listed:
            assert e["hasChildEntities"] == any(p == e["entityId"] for p in self.parent.values())
        roots = self.backend.list_entities(WS, {"filters": [{"parentEntityId": ROOT}], "maxResults": 200})
        assert {e["entityId"] for e in roots["entitySummaries"]} == {e for e, p in self.parent.items() if p is None}


EntityTree.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestEntityTree = EntityTree.TestCase
