"""The control plane's own deployment package: this project zipped as `func azure functionapp
publish` would zip it, i.e. every file `.funcignore` does not exclude (gitignore patterns, read
with `pathspec`), reproducibly (entries sorted, fixed timestamps and permissions:
`shared.bundle.deterministic_zip`). Its SHA-256 decides whether `install` uploads it.

With the Durable Task Scheduler as the Durable backend, the package's `host.json` names the
`azureManaged` storage provider (connection string `DURABLE_TASK_SCHEDULER_CONNECTION_STRING`,
task hub `%TASKHUB_NAME%`), as Microsoft's Durable Task Scheduler samples do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from shared.bundle import deterministic_zip
from shared.engine.infrastructure import DTS_CONNECTION_STRING, DTS_TASK_HUB
from shared.resources.azure import DurableBackend

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUNCIGNORE = ".funcignore"
INDEX_TIMEOUT_SECONDS = 120.0


class PackageError(Exception):
    """The package cannot be built (a file that cannot be read, no function_app.py)."""


@dataclass(frozen=True)
class ControlPlanePackageBuild:
    data: bytes = field(repr=False)
    sha256: str
    """Hex SHA-256 of `data`."""
    files: tuple[str, ...]
    functions: tuple[str, ...]
    """The functions the package declares (read statically, as the platform indexes them)."""


def ignored(root: Path) -> pathspec.PathSpec:
    try:
        lines = (root / FUNCIGNORE).read_text().splitlines()
    except OSError:
        lines = []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def package_files(root: Path = PROJECT_ROOT) -> dict[str, bytes]:
    """Archive path -> bytes of every file `.funcignore` keeps (links are not followed)."""
    spec = ignored(root)
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or path.is_symlink() or spec.match_file(rel):
            continue
        # A folder the patterns exclude excludes what is under it (`sandbox` keeps `sandbox/x.py` out).
        if any(spec.match_file(parent + "/") or spec.match_file(parent)
               for parent in _parents(rel)):
            continue
        try:
            files[rel] = path.read_bytes()
        except OSError as exc:
            raise PackageError(f"{rel}: cannot read ({exc.strerror})") from None
    if "function_app.py" not in files:
        raise PackageError(f"{root}: no function_app.py to package")
    return files


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def host_json_for(original: bytes, backend: DurableBackend) -> bytes:
    """`host.json` for the Durable backend (unchanged for Azure Storage)."""
    if backend == "azure-storage":
        return original
    config = json.loads(original)
    durable = config.setdefault("extensions", {}).setdefault("durableTask", {})
    durable["hubName"] = f"%{DTS_TASK_HUB}%"
    durable["storageProvider"] = {"type": "azureManaged", "connectionStringName": DTS_CONNECTION_STRING}
    return (json.dumps(config, indent=2) + "\n").encode()


def build(backend: DurableBackend = "azure-storage", root: Path = PROJECT_ROOT) -> ControlPlanePackageBuild:
    files = package_files(root)
    if "host.json" in files:
        files["host.json"] = host_json_for(files["host.json"], backend)
    data = deterministic_zip(files)
    return ControlPlanePackageBuild(data, hashlib.sha256(data).hexdigest(), tuple(sorted(files)),
                                    declared_functions(data))


def declared_functions(data: bytes) -> tuple[str, ...]:
    """The functions the zip declares, found as the platform finds them: by importing the
    package's `function_app.py` in a process that sees nothing outside the package
    (`sandbox.runtime.isolated index`). An import that works only from the source tree fails
    here, before anything is uploaded."""
    with tempfile.TemporaryDirectory(prefix="twin-package-") as tmp:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(tmp)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR", "SYSTEMROOT")}
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        try:
            done = subprocess.run([sys.executable, "-m", "sandbox.runtime.isolated", "index", tmp], cwd=tmp,
                                  env=env, capture_output=True, text=True, timeout=INDEX_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise PackageError(f"the package's functions were not listed within {INDEX_TIMEOUT_SECONDS} s "
                               "(its function_app.py blocks or is very slow to import)") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    answer: dict[str, Any] = (json.loads(lines[-1]) if lines
                              else {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]})
    if "functions" not in answer:
        raise PackageError(f"the package does not load on its own: {answer.get('error')}")
    return tuple(sorted({str(f["name"]) for f in answer["functions"]}))


def write(package: ControlPlanePackageBuild, folder: Path) -> Path:
    """Keep the zip under `folder` by its digest (the configuration names this file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"control-plane-{package.sha256}.zip"
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != package.sha256:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(package.data)
        tmp.replace(path)
    return path
