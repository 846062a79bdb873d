"""`deploy FOLDER` sends a bundle; a folder that cannot be one is refused before anything starts
(exit 2, each problem as `path: message`), as the API would refuse it."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from bundle_helpers import example_copy

from twin_cli.commands import deploy


def _args(folder: Path) -> argparse.Namespace:
    # --url makes `deploy` talk to a control plane there; it must never get that far.
    return argparse.Namespace(spec=str(folder), no_prune=False, url="http://127.0.0.1:9", key="k", app=".",
                              state_dir=None, sandbox=None, no_sandbox=False, json=True)


def test_a_folder_with_a_syntax_error_exits_2_naming_file_and_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    project = example_copy(tmp_path)
    (project / "azure_functions" / "processors" / "pressure-sensor-1" / "process.py").write_text("def process(e:\n")
    assert deploy.run(_args(project)) == 2
    err = capsys.readouterr().err
    assert "azure_functions/processors/pressure-sensor-1/process.py: line 1" in err


def test_a_folder_with_a_link_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = example_copy(tmp_path)
    (project / "notes").symlink_to("/etc")
    assert deploy.run(_args(project)) == 2
    assert "notes: a symbolic link" in capsys.readouterr().err


def test_a_good_folder_is_the_bundle_the_api_takes(tmp_path: Path) -> None:
    from shared.bundle import open_bundle

    data = deploy.read_bundle(str(example_copy(tmp_path)))
    assert open_bundle(data).spec.twin.name == "digital-twin-xx"
    assert io.BytesIO(data).read(2) == b"PK"
