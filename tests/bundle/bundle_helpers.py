"""Bundles for the tests: zips made the way users' tools make them (timestamps, folder entries,
a wrapping folder), the example project, and a copy of it with its GCP layers moved to AWS."""

from __future__ import annotations

import io
import json
import shutil
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "original-layout"
WITHOUT_GCP = {
    # The example's own placement, with GCP's layers (L1, cold) moved to AWS until GCP deploys.
    "layer_1_provider": "aws", "layer_2_provider": "azure", "layer_3_hot_provider": "aws",
    "layer_3_cold_provider": "aws", "layer_3_archive_provider": "azure", "layer_4_provider": "azure",
    "layer_5_provider": "aws",
}


def make_zip(files: Mapping[str, bytes | str], *, dirs: tuple[str, ...] = (), links: Mapping[str, str] = {},
             date: tuple[int, int, int, int, int, int] = (2024, 5, 1, 12, 0, 0)) -> bytes:
    """A zip as `zip -r` makes it: folder entries, real timestamps, unix modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in dirs:
            info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=date)
            info.create_system = 3
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            archive.writestr(info, b"")
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=date)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data.encode() if isinstance(data, str) else data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name, date_time=date)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and "__pycache__" not in p.parts}


def example_copy(tmp: Path, providers: Mapping[str, str] | None = WITHOUT_GCP, name: str = "original-layout") -> Path:
    """A copy of `examples/original-layout` (by default with its GCP layers moved to AWS)."""
    target = tmp / name
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    if providers is not None:
        (target / "config_providers.json").write_text(json.dumps(dict(providers), indent=2))
    return target


def twin_json_bundle(spec: Mapping[str, object], code: Mapping[str, str]) -> bytes:
    return make_zip({"twin.json": json.dumps(spec), **code})
