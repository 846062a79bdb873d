"""`python -m control_plane demo`: the main job of `make demo`.

Starts the sandbox (local Azure and AWS), deploys the cross-cloud example (AWS L1-L3, Azure L4-L5:
the remote Persister must reach the ADT Pusher, which must know the Digital Twins instance) through
the control plane running on the local host, sends a few device messages and shows each one
reaching hot storage (DynamoDB) and the twin (Azure Digital Twins), then says how to inspect it.
With `--keep-running` everything stays up until Ctrl-C, so the URLs it prints can be explored.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aws-to-azure" / "twin.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="deploy the aws-to-azure example into a local sandbox and send it telemetry",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    parser.add_argument("spec", nargs="?", default=str(EXAMPLE), help="spec to demonstrate (default: %(default)s)")
    parser.add_argument("--messages", type=int, default=2, metavar="N", help="messages per device (default 2)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="keep the sandbox's and host's state here (default: a temporary folder)")
    parser.add_argument("--keep-running", action="store_true",
                        help="keep the sandbox and the control plane up until Ctrl-C")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sandbox.server import Sandbox
    from shared.loaders import load_spec
    from shared.plan import build_plan
    from shared.validation import SpecError
    from twin_cli.cli import main as cli
    from twin_cli.commands.engine_client import PROJECT_ROOT, Target, open_target

    console = Console()
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        for problem in err.problems:
            console.print(f"[red]{problem.path or '(spec)'}[/red]: {problem.message}", highlight=False)
        return 2
    blockers = build_plan(spec).deployable()
    if blockers:
        for blocker in blockers:
            console.print(f"[red]not deployable:[/red] {blocker}", highlight=False)
        return 2

    with ExitStack() as stack:
        state = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twin-demo-")))
        sandbox_dir = (state / "sandbox").resolve()
        console.rule("1. Local clouds")
        sandbox = stack.enter_context(Sandbox(sandbox_dir, with_blob=False))
        console.print(f"sandbox up: Azure {sandbox.endpoints['azure']['arm']}, AWS {sandbox.endpoints['aws']['endpoint_url']}")

        console.rule(f"2. Deploy twin {spec.twin.name!r} ({args.spec})")
        code = cli(["deploy", str(args.spec), "--sandbox", str(sandbox_dir), "--state-dir", str(state / "host")])
        if code != 0:
            console.print("[red]the deployment did not complete; see above[/red]")
            return code

        console.rule("3. Device telemetry")
        code = cli(["simulate", str(args.spec), "--sandbox", str(sandbox_dir), "--count", str(args.messages)])

        console.rule("4. Inspect it")
        control = sandbox.endpoints["control"]
        console.print(
            f"- every call the control plane made: {control}/requests (?mutating=true for writes only)\n"
            f"- what exists in the clouds now:    {control}/resources\n"
            f"- the plan:                         python -m control_plane plan {args.spec}\n"
            f"- the recorded twin state:          GET /api/twins/{spec.twin.name} on the control plane",
            highlight=False,
        )
        if not args.keep_running:
            console.print("(run `python -m control_plane demo --keep-running` to keep the sandbox and the "
                          "control plane up and explore these URLs)")
            return code
        args_ns = argparse.Namespace(url=None, key=None, app=str(PROJECT_ROOT), state_dir=str(state / "host"),
                                     sandbox=str(sandbox_dir), no_sandbox=False, json=False)
        target: Target = stack.enter_context(open_target(args_ns, console))
        console.print(f"control plane: {target.base}/api/twins/{spec.twin.name} "
                      f"(header x-functions-key: {target.key}); Ctrl-C stops everything")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        return code
