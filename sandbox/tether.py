"""`python -m sandbox.tether ARGS...`: `python -m control_plane ARGS...` that dies with its parent.

The sandbox starts each Function App's host through this module with a pipe as stdin and never
writes to it. When the sandbox process ends, however it ends (SIGKILL included), the kernel
closes the pipe's other end; this process reads end-of-file, stops its process group (SIGTERM,
then SIGKILL after a grace period) and so never outlives the sandbox.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 5.0


def _watch_parent() -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    # End of file: the parent is gone. Our own group (the sandbox starts us in a new session).
    os.killpg(os.getpgrp(), signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    threading.Thread(target=_watch_parent, name="tether", daemon=True).start()
    from twin_cli.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
