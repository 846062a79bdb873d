"""Twin names that differ only in case are one name to the clouds (S3 buckets and GCP names are
lowercase, Azure resource groups and IAM roles ignore case), so the API refuses a twin whose name
equals an existing twin's up to case (409), and its objects never meet (DESIGN principle 8).

Which twins exist is the twin state entities' business (keyed by the exact name); to find the
ones sharing a name up to case in one read, each deployment also claims its name in a small index
entity keyed by the case-folded name (`twin_names@greenhouse-x` holds `["GREENHOUSE-X"]`). A
claim is never released: a name whose twin no longer exists (destroyed) is ignored. Twins
deployed before the index existed are still found when their name is all lower case (the
common case) by reading the state under the case-folded name directly.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

ENTITY = "twin_names"
CLAIM = "claim"
MAX_NAMES = 16


def index_key(twin: str) -> str:
    return twin.casefold()


def claimed(state: Any, twin: str) -> dict[str, list[str]]:
    """The index entity's state after `twin` claimed its key (newest first, bounded)."""
    names = [n for n in (state or {}).get("names", []) if isinstance(n, str) and n != twin]
    return {"names": [twin, *names][:MAX_NAMES]}


def _exists(state: dict[str, Any] | None) -> bool:
    return bool(state and (state.get("resources") or state.get("outputs") or state.get("lock")))


async def existing_variant(client: df.DurableOrchestrationClient, twin: str, read_state: Any) -> str | None:
    """The name of an existing twin equal to `twin` up to case, but not `twin` itself (None if
    there is none). `read_state(client, name)` reads a twin's state entity."""
    key = index_key(twin)
    candidates: list[str] = []
    index = await client.read_entity_state(df.EntityId(ENTITY, key))
    if index.entity_exists and isinstance(index.entity_state, dict):
        candidates += [n for n in index.entity_state.get("names", []) if isinstance(n, str)]
    candidates.append(key)  # a twin from before the index, named in lower case
    for name in dict.fromkeys(candidates):
        if name != twin and _exists(await read_state(client, name)):
            return name
    return None


async def claim(client: df.DurableOrchestrationClient, twin: str) -> None:
    """Record that `twin` exists under its case-folded name (a signal: applied in order)."""
    await client.signal_entity(df.EntityId(ENTITY, index_key(twin)), CLAIM, twin)


def apply(context: df.DurableEntityContext) -> None:
    """The index entity's body: `claim(name)` adds a name."""
    state = context.get_state(lambda: {"names": []})
    if context.operation_name == CLAIM:
        name = context.get_input()
        if isinstance(name, str) and name:
            state = claimed(state, name)
    context.set_state(state)
