"""The packages the providers deploy (a Function App's zip, a Lambda's, a Cloud Function's source).

A package is built reproducibly from its resource's configuration and the users' code it runs
(read from the bundle store, checked against the plan's digests), once per process and
configuration: parallel activities, the polls of one deployment, and a build started early
(`prebuild`) share it. A failed build is not kept, so the next call tries again.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from shared.engine.errors import PermanentError
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig
from shared.resources.gcp import CloudFunctionConfig

if TYPE_CHECKING:
    from payload_functions.packaging import Package

PackagedConfig = FunctionAppConfig | LambdaConfig | CloudFunctionConfig

_lock = threading.Lock()
_built: dict[tuple[str, str], Future[Package]] = {}
_prebuilder: ThreadPoolExecutor | None = None


def package(kind: str, label: str, config: PackagedConfig) -> Package:
    """The package (`data`, `sha256_hex`) of a resource of plan kind `kind` (`function-app`,
    `lambda`, `cloud-function`); `label` names the resource in a packaging error, which is permanent."""
    from activities.bundle_store import user_code_folders
    from payload_functions import packaging

    key = (kind, config.model_dump_json())
    with _lock:
        building = _built.get(key)
        mine = building is None
        if building is None:
            building = _built[key] = Future()
    if mine:
        try:
            building.set_result(packaging.build_for_resource(kind, config.name, config, user_code_folders(config.user_code)))
        except Exception as exc:
            with _lock:
                _built.pop(key, None)
            failure = PermanentError(f"{label}: cannot build its package: {exc}") \
                if isinstance(exc, packaging.PackagingError) else exc
            building.set_exception(failure)
    return building.result()


def prebuild(kind: str, label: str, config: PackagedConfig) -> None:
    """Start building the package in the background (a Function App's site creation, an I/O wait
    of tens of seconds on Azure, then overlaps the build); `package` takes the result."""
    global _prebuilder
    with _lock:
        if _prebuilder is None:
            _prebuilder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="package-build")
        prebuilder = _prebuilder
    prebuilder.submit(package, kind, label, config)
