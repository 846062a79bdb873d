"""`python -m sandbox.runtime.isolated serve|index APP_DIR [--port N] [--state-dir DIR]`: run (or
index) a deployed Function App package the way the platform does, seeing only the package.

On Azure the Functions host and its Python worker are not part of the app: the app's own
modules come from its package alone. Here the runtime is the local host (`local_host`), which
lives in this repository beside the control plane's sources, so a package could silently import
what it does not carry (a module `.funcignore` leaves out, a package file that was never
zipped). This entry point separates the two:

1. the runtime is loaded first (every `local_host` module);
2. every module of this project's packages is then forgotten, the repository leaves `sys.path`,
   and an import guard goes first on `sys.meta_path`: a first-party name (`shared`, `activities`,
   `sandbox`, `twin_cli`, ...) is found in the package folder or nowhere, whatever else
   (PYTHONPATH, an editable install) could provide it;
3. the app is loaded from its folder and served (`serve`: prints `READY <url>` like
   `python -m control_plane serve`), or only indexed (`index`: prints its functions as JSON, as
   the platform's indexing reports them).

Third-party libraries come from the sandbox's environment (a deployed package's
`requirements.txt` is not installed here); `tests/install` imports the control plane's package
in a fresh environment made from its `requirements.txt` alone.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from sandbox.tether import _watch_parent

# This project's top-level packages (pyproject.toml): none may come from outside the package.
FIRST_PARTY = frozenset({"control_plane", "orchestrators", "activities", "payload_functions", "shared",
                         "local_host", "twin_cli", "sandbox", "function_app"})
RUNTIME = ("local_host",)


class PackageOnlyFinder(importlib.abc.MetaPathFinder):
    """First-party modules are found in the package folder or not at all."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = str(app_dir)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top not in FIRST_PARTY:
            return None
        if "." in fullname:
            parent = sys.modules.get(fullname.rpartition(".")[0])
            search = [p for p in (getattr(parent, "__path__", None) or []) if _inside(p, self.app_dir)]
        else:
            search = [self.app_dir]
        spec = importlib.machinery.PathFinder.find_spec(fullname, search) if search else None
        if spec is None:
            raise ModuleNotFoundError(f"No module named {fullname!r} in the deployed package ({self.app_dir})",
                                      name=fullname)
        return spec


def _inside(path: str, root: str) -> bool:
    resolved = os.path.realpath(path)
    return resolved == os.path.realpath(root) or resolved.startswith(os.path.realpath(root) + os.sep)


def isolate(app_dir: Path) -> None:
    """Load the runtime, then forget every first-party module and let them come only from `app_dir`."""
    for name in RUNTIME:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(info.name)
    # The runtime, and this entry point's own modules; every other first-party module is forgotten.
    keep = {name for name in sys.modules if name.partition(".")[0] in RUNTIME} | {
        "sandbox", "sandbox.runtime", "sandbox.runtime.isolated", "sandbox.tether"}
    for name in [n for n in sys.modules if n.partition(".")[0] in FIRST_PARTY and n not in keep]:
        del sys.modules[name]
    repo = str(Path(__file__).resolve().parents[2])
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != repo]
    sys.meta_path.insert(0, PackageOnlyFinder(app_dir))
    os.environ.pop("PYTHONPATH", None)  # processes the app starts see the package only, too


def _function_name(invocable: Any) -> str:
    """The name the Functions host gives the function: its Python name (a Durable trigger may
    register it under another orchestration, activity or entity name)."""
    fn = invocable.fn
    target = getattr(fn, "orchestrator_function", None) or getattr(fn, "entity_function", None) or fn
    return str(getattr(target, "__name__", None) or invocable.function_name)


def index(app_dir: Path) -> int:
    from local_host.app_loader import AppLoadError, load_app

    try:
        registry = load_app(app_dir)
    except AppLoadError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    functions: list[dict[str, Any]] = []
    for route in registry.http_routes:
        functions.append({"name": route.function_name, "trigger": "httpTrigger", "param": route.trigger_param,
                          "route": route.route})
    kinds = (("orchestrationTrigger", registry.orchestrators), ("activityTrigger", registry.activities),
             ("entityTrigger", registry.entities), ("eventGridTrigger", registry.eventgrid))
    for trigger, table in kinds:
        for invocable in table.values():
            functions.append({"name": _function_name(invocable), "trigger": trigger, "param": invocable.trigger_param})
    for name in registry.timers:
        functions.append({"name": name, "trigger": "timerTrigger", "param": "timer"})
    print(json.dumps({"functions": functions}))
    return 0


def serve(app_dir: Path, port: int, state_dir: Path | None) -> int:
    from local_host import AppLoadError, HostError, LocalHost

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = LocalHost(app_dir=app_dir, state_dir=state_dir, port=port)
    try:
        host.start()
    except (AppLoadError, HostError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        assert host.registry is not None
        print(f"Serving {host.app_dir} on {host.base_url}", flush=True)
        print("Functions:", flush=True)
        for line in host.registry.summary():
            print(line, flush=True)
        sys.stdout.write(f"READY {host.base_url}\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        host.stop()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.runtime.isolated")
    parser.add_argument("command", choices=("serve", "index"))
    parser.add_argument("app_dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    app_dir = args.app_dir.resolve()
    if args.command == "serve":
        threading.Thread(target=_watch_parent, name="tether", daemon=True).start()
    isolate(app_dir)
    return index(app_dir) if args.command == "index" else serve(app_dir, args.port, args.state_dir)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
