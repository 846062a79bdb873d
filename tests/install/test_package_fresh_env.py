"""The control plane's package, as zipped by `install`, imports in a fresh virtual environment made
from `requirements.txt` alone (what Azure installs for it) and lists its functions: nothing it
needs is left out of the zip or of the requirements. pip's cache and the local registries keep
this to a minute or two."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

LIST_FUNCTIONS = """
import importlib.util, json, sys
package = sys.argv[1]
sys.path.insert(0, package)
spec = importlib.util.spec_from_file_location("function_app", package + "/function_app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(f.get_function_name() for f in module.app.get_functions())))
"""


@pytest.mark.timeout(900)
def test_the_zipped_package_imports_in_a_fresh_environment_from_requirements_alone(tmp_path: Path) -> None:
    from twin_cli.package import build

    package = build()
    folder = tmp_path / "package"
    with zipfile.ZipFile(io.BytesIO(package.data)) as zf:
        zf.extractall(folder)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "-r", str(folder / "requirements.txt")], capture_output=True, text=True, timeout=800)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # -I: no PYTHONPATH, no user site, not the current folder: the package and its requirements only.
    listed = subprocess.run([python, "-I", "-c", LIST_FUNCTIONS, str(folder)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    functions = json.loads(listed.stdout.strip().splitlines()[-1])
    assert set(package.functions) == set(functions), (package.functions, functions)
    assert {"deployments_start", "health", "twin_events", "azure_resource_events", "deploy_twin",
            "twin_state"} <= set(functions), functions
    # What the local host and the sandbox bring is absent there: the package never needed it.
    probe = subprocess.run([python, "-I", "-c", "import local_host"], capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0
    assert sys.executable != python
