"""Setup (kind `service-account`): the service account the twin's functions run as.

It holds no project-wide role of its own: each resource that the functions use grants it exactly
what they need there (Firestore `roles/datastore.user`, `roles/storage.objectUser` on the cold and
archive buckets, `roles/run.invoker` on the private functions they call), and takes it back when
that resource goes. A service account has no labels: its description names its owner
(`owner_description`); an account without that description is unowned, and adopting it writes the
description (PatchServiceAccount).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    account_marks,
    adopt_account,
    get_or_none,
    iam_admin,
    ignore_missing,
    owner_description,
    project_of,
)
from activities.registry import register
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import ServiceAccountConfig


def account_name(project: str, account_id: str) -> str:
    return f"projects/{project}/serviceAccounts/{account_email(account_id, project)}"


@register("gcp", "service-account")
class ServiceAccount(GcpResource[ServiceAccountConfig]):
    model = ServiceAccountConfig
    label = "service account"
    labelled = False

    def describe(self, call: ResourceCall, config: ServiceAccountConfig) -> Any:
        name = account_name(project_of(config), config.name)
        return get_or_none(lambda: iam_admin().get_service_account(request={"name": name}))

    def owner_marks(self, call: ResourceCall, config: ServiceAccountConfig, current: Any) -> Mapping[str, str]:
        return account_marks(current)

    def converge(self, call: ResourceCall, config: ServiceAccountConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict

        project = project_of(config)
        current = self.found(call, config)
        if current is None:
            with contextlib.suppress(Conflict):  # created by a concurrent run: read again next poll
                iam_admin().create_service_account(request={
                    "name": f"projects/{project}", "account_id": config.name,
                    "service_account": {"display_name": f"{call.twin} functions",
                                        "description": owner_description(call)}})
            current = self.found(call, config)
            action = "created"
        if current is not None and current.description != owner_description(call):
            adopt_account(account_name(project, config.name), call)  # unowned (found allowed it): mark it ours
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action)

    def details(self, call: ResourceCall, config: ServiceAccountConfig, current: Any) -> dict[str, Any]:
        return {"email": current.email, "description": current.description}

    def remove(self, call: ResourceCall, config: ServiceAccountConfig, current: Any) -> bool:
        name = account_name(project_of(config), config.name)
        ignore_missing(lambda: iam_admin().delete_service_account(request={"name": name}))
        return True
