"""What the deploy/status/destroy/rotate-token commands share: where the control plane runs
(a running one at `--url` with `--key`, or a local host started in this process, optionally
pointed at a sandbox), plain HTTP calls to its API, and live progress with rich.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from shared.contracts import ControlPlaneSetting

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")


class CliError(Exception):
    """A problem the user can fix; printed without a traceback (exit code 2)."""


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="base URL of a running control plane (default: start one in this process)")
    parser.add_argument("--key", default=os.environ.get(ControlPlaneSetting.FUNCTION_KEY),
                        help=f"function key for --url (default: env {ControlPlaneSetting.FUNCTION_KEY})")
    parser.add_argument("--app", default=str(PROJECT_ROOT),
                        help="folder holding the function_app.py to host locally (default: this project)")
    parser.add_argument("--state-dir", help="local host state folder, to keep twins between runs (default: temporary)")
    parser.add_argument("--sandbox", metavar="DIR",
                        help="use the running sandbox whose endpoints.json is in DIR (default: start one here)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="local host without a sandbox: providers use the real clouds' credential chains")
    parser.add_argument("--json", action="store_true", help="print the final view as JSON")


@dataclass
class Target:
    base: str
    key: str

    def call(self, method: str, route: str, body: Any = None, *, raw: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        """One API call: `body` as JSON, or `raw` bytes sent as `content_type` (a bundle)."""
        url = f"{self.base}/api/{route}"
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": content_type, "x-functions-key": self.key})
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        except urllib.error.URLError as err:
            raise CliError(f"cannot reach the control plane at {self.base}: {err.reason}") from err
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, {"errors": [{"path": "", "message": raw.decode(errors="replace")[:500]}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def open_target(args: argparse.Namespace, console: Console) -> Iterator[Target]:
    """A remote control plane, or a local host (and sandbox) for the duration of the command."""
    if args.url:
        if not args.key:
            raise CliError(f"--url needs --key (or env {ControlPlaneSetting.FUNCTION_KEY})")
        yield Target(args.url.rstrip("/"), args.key)
        return
    from local_host import LocalHost

    app_dir = Path(args.app)
    if not (app_dir / "function_app.py").is_file():
        raise CliError(f"--app {app_dir}: no function_app.py there")
    with ExitStack() as stack:
        environ: dict[str, str] = {}
        if args.sandbox:
            if not (Path(args.sandbox) / "endpoints.json").is_file():
                raise CliError(f"--sandbox {args.sandbox}: no endpoints.json there (is the sandbox running?)")
            environ[ControlPlaneSetting.SANDBOX_DIR] = str(Path(args.sandbox).resolve())
        elif not args.no_sandbox and ControlPlaneSetting.SANDBOX_DIR not in os.environ:
            from sandbox.server import Sandbox

            sandbox_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="twin-sandbox-"))
            console.print("[dim]starting a local sandbox...[/dim]")
            stack.enter_context(Sandbox(sandbox_dir))
            environ[ControlPlaneSetting.SANDBOX_DIR] = sandbox_dir
        if environ.get(ControlPlaneSetting.SANDBOX_DIR) or os.environ.get(ControlPlaneSetting.SANDBOX_DIR):
            # Secret outputs go to the sandbox's vault; Durable's history keeps references only.
            from twin_cli.infrastructure import sandbox_settings

            environ.update(sandbox_settings(environ))
        port = _free_port()
        key = args.key or "local-cli-key"
        # Events go to this app's own Event Grid webhook, which re-triggers propagation.
        environ.setdefault(ControlPlaneSetting.EVENTS_ENDPOINT, os.environ.get(ControlPlaneSetting.EVENTS_ENDPOINT) or
                           f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?functionName=twin_events&code={key}")
        host = LocalHost(app_dir=app_dir, state_dir=Path(args.state_dir) if args.state_dir else None, port=port,
                         function_key=key, environ=environ)
        host.start()
        stack.callback(host.stop)
        yield Target(host.base_url, key)


def print_errors(console: Console, body: Any) -> None:
    for error in (body or {}).get("errors", []):
        console.print(f"[red]{error.get('path') or '(root)'}[/red]: {error.get('message')}")


def _progress_table(view: dict[str, Any]) -> Table:
    table = Table(title=f"{view.get('operation', '')} {view.get('twin', '')}: {view.get('runtimeStatus')} "
                        f"- {view.get('step') or ''}", expand=False)
    for column in ("layer", "provider", "state", "done"):
        table.add_column(column)
    colours = {"done": "green", "running": "yellow", "failed": "red", "pending": "dim"}
    for layer, info in view.get("layers", {}).items():
        state = info.get("state", "")
        table.add_row(layer, info.get("provider", ""), f"[{colours.get(state, 'white')}]{state}[/]",
                      f"{info.get('done', 0)}/{info.get('total', 0)}")
    return table


def follow(target: Target, instance: str, console: Console, as_json: bool, timeout: float = 3600) -> tuple[int, Any]:
    """Poll the operation's view until it ends, showing per-layer progress; (exit code, final view)."""
    route = f"deployments/{urllib.parse.quote(instance, safe=':')}"
    deadline = time.monotonic() + timeout
    view: Any = None
    live = Live(console=console, transient=False, auto_refresh=False, redirect_stdout=False)
    with ExitStack() as stack:
        if not as_json:  # stdout carries only the JSON document in --json mode
            stack.enter_context(live)
        while time.monotonic() < deadline:
            status, view = target.call("GET", route)
            if status != 200:
                raise CliError(f"GET /api/{route} answered {status}: {view}")
            if not as_json:
                live.update(_progress_table(view), refresh=True)
            if view.get("runtimeStatus") in TERMINAL:
                break
            time.sleep(0.5)
        else:
            raise CliError(f"{instance} did not finish within {timeout:.0f} s; it keeps running")
    if not as_json:
        console.print()  # end the live table's line before the outcome is printed
    return (EXIT_OK if view.get("runtimeStatus") == "Completed" else EXIT_FAILED), view


def print_outcome(console: Console, view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, indent=2))
        return
    summary = view.get("summary", {}).get("text")
    if summary:
        console.print(f"[bold]{summary}[/bold]")
    if view.get("outputs"):
        table = Table(title="outputs")
        for column in ("output", "version", "value"):
            table.add_column(column)
        for name, output in view["outputs"].items():
            table.add_row(name, str(output.get("version")), str(output.get("value")))
        console.print(table)
    for error in view.get("errors", []):
        console.print(f"[red]{error.get('resource') or 'error'}[/red]: {error.get('message')}")


def start_and_follow(args: argparse.Namespace, method: str, route: str, body: Any = None) -> int:
    """Start an operation on an existing twin (destroy, rotate-token), follow it to the end and
    print its outcome. Exit code: 0 completed, 1 failed or refused, 2 invalid input."""
    console = Console(stderr=True)
    try:
        with open_target(args, console) as target:
            status, answer = target.call(method, route, body)
            if status != 202:
                print_errors(console, answer)
                return EXIT_INVALID if status == 400 else EXIT_FAILED
            code, view = follow(target, answer["id"], console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    print_outcome(Console() if not args.json else console, view, args.json)
    return code
