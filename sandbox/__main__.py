"""`python -m sandbox serve --state-dir DIR [--profile NAME] [--seed N]`: run every sandbox
endpoint on 127.0.0.1 until SIGINT/SIGTERM, writing DIR/endpoints.json."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from sandbox.core.profiles import PROFILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the sandbox and run until interrupted")
    serve.add_argument("--state-dir", required=True, help="where endpoints.json, ca.pem and service state go")
    serve.add_argument(
        "--profile", default="instant", choices=sorted(PROFILES), help="latency and fault profile"
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault injector")
    serve.add_argument("--no-blob", action="store_true", help="do not start Azurite")
    serve.add_argument("--no-aws", action="store_true", help="do not start the AWS endpoints")
    serve.add_argument("--no-gcp", action="store_true", help="do not start the Google Cloud endpoints")
    args = parser.parse_args(argv)

    from sandbox.server import Sandbox

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox = Sandbox(
        args.state_dir,
        profile=args.profile,
        seed=args.seed,
        with_blob=not args.no_blob,
        with_aws=not args.no_aws,
        with_gcp=not args.no_gcp,
    )
    try:
        endpoints = sandbox.start()
        print(json.dumps(endpoints), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
