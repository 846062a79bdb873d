"""The deployments whose traffic the conformance tests check: the e2e examples `azure-only` and
`aws-to-azure`, each deployed, deployed again unchanged and destroyed, through the control plane
the CLI runs (local host, real Durable replay, the control plane's own vault), against a sandbox
that records whole ARM and Digital Twins exchanges."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sandbox.core.exchanges import Exchange
from sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("azure-only", "aws-to-azure")
FOLLOW_TIMEOUT_SECONDS = 300


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "examples" / name / "twin.json").read_text()))


@dataclass
class Run:
    sandbox: Sandbox
    target: Any
    views: dict[str, dict[str, Any]] = field(default_factory=dict)

    def deploy(self, spec: dict[str, Any], label: str) -> dict[str, Any]:
        from twin_cli.commands.engine_client import follow

        status, body = self.target.call("POST", "deployments", spec)
        assert status == 202, body
        _, view = follow(self.target, body["id"], Console(file=io.StringIO()), True, timeout=FOLLOW_TIMEOUT_SECONDS)
        self.views[label] = dict(view)
        return dict(view)

    def destroy(self, twin: str, label: str) -> dict[str, Any]:
        from twin_cli.commands.engine_client import follow

        status, body = self.target.call("DELETE", f"twins/{twin}")
        assert status == 202, body
        _, view = follow(self.target, body["id"], Console(file=io.StringIO()), True, timeout=FOLLOW_TIMEOUT_SECONDS)
        self.views[label] = dict(view)
        return dict(view)

    def mutating_since(self, seq: int) -> list[str]:
        return [f"{r.method} {r.url.split('?', 1)[0]}" for r in self.sandbox.ctx.request_log.since(seq)
                if r.mutating and r.cloud == "azure"]

    @property
    def exchanges(self) -> list[Exchange]:
        return self.sandbox.ctx.exchanges.all()


@contextmanager
def control_plane(tmp: Path, profile: str = "instant", seed: int = 0, with_aws: bool = True) -> Iterator[Run]:
    """A recording sandbox (no Function App runtime, no Blob emulator: only the wire matters here)
    and the local control plane pointed at it."""
    from twin_cli.commands.engine_client import PROJECT_ROOT, open_target

    sandbox_dir = tmp / "sandbox"
    with Sandbox(sandbox_dir, profile=profile, seed=seed, with_blob=False, with_aws=with_aws,
                 with_function_apps=False, with_gcp=False, record_exchanges=True) as sandbox:
        args = argparse.Namespace(url=None, key=None, app=str(PROJECT_ROOT), state_dir=str(tmp / "host"),
                                  sandbox=str(sandbox_dir), no_sandbox=False, json=True)
        with open_target(args, Console(file=io.StringIO())) as target:
            yield Run(sandbox, target)
