"""`python -m control_plane plan SPEC [--json | --mermaid]`: show what a spec would deploy.

SPEC is a JSON file or a folder (a `twin.json` or the original project's layout), read as the
bundle `deploy` would send, so processors and event actions are planned from its code folders
and a missing or broken folder is a blocker. The default output is for a
person: layers and providers, resources in deployment order, the cross-cloud wires, and which
consumers are re-applied when each output changes. `--json` prints the plan document that
`POST /api/plan` returns; `--mermaid` a flowchart. An invalid spec exits with code 2 and prints
each problem on stderr as `path: message`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.contracts import FEEDBACK_BOUNDARY
from shared.loaders import load_spec
from shared.plan import Plan, build_plan
from shared.validation import Problem, SpecError

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show the resources, outputs and wires a spec would deploy",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("spec", metavar="SPEC", help="a twin.json file or an original-layout folder")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="print the plan as JSON")
    fmt.add_argument("--mermaid", dest="format", action="store_const", const="mermaid",
                     help="print a Mermaid flowchart of resources and wires")
    parser.set_defaults(func=run, format="text")


def format_problem(problem: Problem) -> str:
    """`path: message`; the root of the document is shown as `(root)`."""
    return f"{problem.path or '(root)'}: {problem.message}"


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if Path(args.spec).is_dir():
            from shared.bundle import load_bundle_folder

            bundle = load_bundle_folder(Path(args.spec))
            plan = build_plan(bundle.spec, bundle.code)
        else:
            plan = build_plan(load_spec(args.spec))
    except SpecError as exc:
        for problem in exc.problems:
            print(format_problem(problem), file=err)
        return EXIT_INVALID
    if args.format == "json":
        out.write(json.dumps(plan.to_json(), indent=2) + "\n")
    elif args.format == "mermaid":
        out.write(plan.to_mermaid())
    else:
        out.write(render_text(plan))
    return EXIT_OK


def render_text(plan: Plan) -> str:
    """The human view of a plan."""
    lines: list[str] = [f"Twin {plan.twin}", "", "Layers"]
    for layer, provider in plan.placement.items():
        lines.append(f"  {layer:<11} {provider}")
    lines.append(f"  twin updates: {plan.twin_update}")
    lines += ["", f"Resources in deployment order ({len(plan.resources)})"]
    for i, rid in enumerate(plan.topological_order(), 1):
        r = plan.resource(rid)
        needs = f"  <- {', '.join(r.needs)}" if r.needs else ""
        lines.append(f"  {i:>4}. {rid} [{r.kind}]{needs}")

    # The token comes from the control plane itself; listed below with its consumers.
    cross = [w for w in plan.wires if _provider(w.producer) not in (_provider(w.consumer), "control")]
    lines += ["", f"Cross-cloud wires ({len(cross)})"]
    if not cross:
        lines.append("  none")
    for w in cross:
        late = "  (late-bound: written by propagation once the producer has it)" if w.late else ""
        lines.append(f"  {w.output} ({w.producer}) -> {w.consumer} as {w.setting}{late}")

    lines += ["", "Boundaries"]
    for b in plan.boundaries:
        if b.crosses:
            lines.append(f"  {b.boundary}: {b.sender_provider} -> {b.receiver_provider}; "
                         f"receivers {', '.join(b.receivers)}; senders {', '.join(b.senders)}")
        elif b.boundary == FEEDBACK_BOUNDARY and b.sender_provider != b.receiver_provider:
            lines.append(f"  {b.boundary}: no receiver: the spec asks for no device feedback "
                         f"({b.sender_provider} -> {b.receiver_provider})")
        else:
            lines.append(f"  {b.boundary}: no receiver needed ({b.sender_provider} -> {b.receiver_provider})")

    lines += ["", "Re-applied when an output changes"]
    for o in plan.outputs:
        wires = plan.wires_of(o.name)
        if not wires:
            continue
        secret = " (secret)" if o.secret else ""
        targets = ", ".join(f"{w.consumer} [{w.setting}]" for w in wires)
        lines.append(f"  {o.name}{secret} from {o.producer}: {targets}")

    blockers = plan.deployable()
    lines += ["", "Deployable: " + ("yes" if not blockers else "no")]
    lines += [f"  {b}" for b in blockers]
    if plan.notes:
        lines += ["", "Notes"] + [f"  {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


def _provider(resource_id: str) -> str:
    return resource_id.split("/", 1)[0]
