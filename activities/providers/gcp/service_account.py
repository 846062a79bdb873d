"""Setup (kind `service-account`): the service account the twin's functions run as.

It holds no project-wide role of its own: each resource that the functions use grants it exactly
what they need there (Firestore `roles/datastore.user`, `roles/storage.objectUser` on the cold and
archive buckets, `roles/run.invoker` on the private functions they call), and takes it back when
that resource goes. A service account has no labels; its description names its owner.
"""

from __future__ import annotations

import contextlib
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
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

    def describe(self, call: ResourceCall, config: ServiceAccountConfig) -> Any:
        name = account_name(project_of(config), config.name)
        return get_or_none(lambda: iam_admin().get_service_account(request={"name": name}))

    def converge(self, call: ResourceCall, config: ServiceAccountConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict

        if self.describe(call, config) is None:
            project = project_of(config)
            with contextlib.suppress(Conflict):  # created by a concurrent run: it is there
                iam_admin().create_service_account(request={
                    "name": f"projects/{project}", "account_id": config.name,
                    "service_account": {"display_name": f"{call.twin} functions",
                                        "description": owner_description(call)}})
            action = "created"
        return EnsureResult(action=action)

    def details(self, call: ResourceCall, config: ServiceAccountConfig, current: Any) -> dict[str, Any]:
        return {"email": current.email, "description": current.description}

    def remove(self, call: ResourceCall, config: ServiceAccountConfig, current: Any) -> bool:
        name = account_name(project_of(config), config.name)
        ignore_missing(lambda: iam_admin().delete_service_account(request={"name": name}))
        return True
