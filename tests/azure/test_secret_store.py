"""Secret outputs by reference (`activities/secrets.py`) against the sandbox's Key Vault, through
the real `azure-keyvault-secrets` client and the activity boundary that uses it."""

from __future__ import annotations

import pytest
from providers_kit import SandboxHandle, unique_twin

from activities import blueprint
from activities.clouds import clouds_from_environ
from activities.secrets import configured_store, is_ref, protect, resolve, secret_name
from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError
from twin_cli.infrastructure import ensure_vault


@pytest.fixture
def vault(sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    url = ensure_vault(clouds_from_environ())
    monkeypatch.setenv(ControlPlaneSetting.KEY_VAULT_URL, url)
    return url


def test_names_fit_key_vault_and_do_not_collide() -> None:
    a, b = secret_name("t", "DEVICE_CREDENTIALS:a_b"), secret_name("t", "DEVICE_CREDENTIALS:a-b")
    assert a != b
    long = secret_name("x" * 200, "INTER_CLOUD_TOKEN")
    for name in (a, b, long):
        assert 1 <= len(name) <= 127 and all(c.isalnum() or c == "-" for c in name)


def test_secret_outputs_become_references_and_unchanged_values_keep_theirs(vault: str, sandbox: SandboxHandle) -> None:
    store = configured_store()
    assert store is not None and store.vault_url == vault
    twin = unique_twin()
    outputs = {"INTER_CLOUD_TOKEN": "s3cret-value-1", "ADT_INSTANCE_URL": "https://adt", "INTER_CLOUD_TOKEN_PREVIOUS": ""}
    first = protect(twin, outputs, {}, {}, store)
    assert is_ref(first["INTER_CLOUD_TOKEN"]) and "s3cret" not in first["INTER_CLOUD_TOKEN"]
    assert first["ADT_INSTANCE_URL"] == "https://adt" and first["INTER_CLOUD_TOKEN_PREVIOUS"] == ""
    assert resolve(first, store)["INTER_CLOUD_TOKEN"] == "s3cret-value-1"

    mark = sandbox.seq()
    again = protect(twin, outputs, first, resolve(first, store), store)
    assert again == first and sandbox.mutations(mark) == [], "an unchanged secret is not stored again"
    changed = protect(twin, {**outputs, "INTER_CLOUD_TOKEN": "s3cret-value-2"}, first, resolve(first, store), store)
    assert is_ref(changed["INTER_CLOUD_TOKEN"]) and changed["INTER_CLOUD_TOKEN"] != first["INTER_CLOUD_TOKEN"]
    assert store.get(first["INTER_CLOUD_TOKEN"]) == "s3cret-value-1", "an old reference still names its version"

    # Destroyed (deleted and purged), then the twin comes back: the name is free again.
    store.delete(twin, "INTER_CLOUD_TOKEN")
    back = store.put(twin, "INTER_CLOUD_TOKEN", "s3cret-value-3")
    assert store.get(back) == "s3cret-value-3"


def test_a_reference_without_a_vault_is_a_clear_error(vault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = configured_store()
    assert store is not None
    ref = store.put(unique_twin(), "INTER_CLOUD_TOKEN", "value-of-some-length")
    monkeypatch.delenv(ControlPlaneSetting.KEY_VAULT_URL)
    with pytest.raises(PermanentError, match=ControlPlaneSetting.KEY_VAULT_URL):
        resolve({"INTER_CLOUD_TOKEN": ref}, configured_store())


def test_the_generated_token_goes_to_the_vault_and_only_its_reference_is_returned(vault: str) -> None:
    ref = blueprint.secret_generate({"twin": unique_twin(), "output": "INTER_CLOUD_TOKEN"})
    assert is_ref(ref)
    store = configured_store()
    assert store is not None and len(store.get(ref)) >= 32
