"""Setup resources (resource group, identity, storage account) through the real SDKs."""

from __future__ import annotations

from typing import Any

SETUP = ["azure/setup/resource-group", "azure/setup/identity", "azure/setup/storage-account"]


def test_setup_ensure_read_twice_and_delete(walker: Any, sandbox: Any) -> None:
    w = walker()
    first = w.ensure_all(SETUP)
    assert [r.action for r in first.values()] == ["created", "created", "created"]
    ident = w.outputs["azure/setup/identity"]
    assert set(ident) == {"AZURE_IDENTITY_CLIENT_ID", "AZURE_IDENTITY_PRINCIPAL_ID"}
    conn = w.outputs["azure/setup/storage-account"]["AZURE_STORAGE_CONNECTION_STRING"]
    assert "AccountKey=" in conn
    mark = sandbox.seq()
    second = w.ensure_all(SETUP)
    assert [r.action for r in second.values()] == ["unchanged"] * 3
    assert second["azure/setup/storage-account"].outputs == first["azure/setup/storage-account"].outputs
    assert sandbox.mutations(mark) == []
    read = w.read("azure/setup/identity")
    assert read.exists and read.outputs == ident
    deleted = w.delete_all(SETUP)
    assert {r.action for r in deleted.values()} == {"deleted"}
    assert not w.read("azure/setup/resource-group").exists
    assert w.delete("azure/setup/identity").action == "absent"
