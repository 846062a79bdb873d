"""Run a command so that it never outlives the process that started it.

Used as `python launcher.py CMD ARGS...` with a pipe on stdin. The command is killed when:
- the starter closes the pipe or dies in any way (even SIGKILL): our stdin reaches EOF;
- this launcher dies in any way: the kernel sends the command SIGTERM (PR_SET_PDEATHSIG);
- the launcher gets SIGTERM or SIGINT (the starter's `stop()`), which it passes on.
Kept free of project imports: it runs as a plain script in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the forked child before exec; the launcher is single-threaded at that point.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: launcher.py CMD [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    stopping = threading.Lock()

    def stop_child(*_: object) -> None:
        # Once only: Azurite saves its data on the first SIGTERM and dies unsaved on a second.
        if stopping.acquire(blocking=False) and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop_child)
    signal.signal(signal.SIGINT, stop_child)

    def watch_stdin() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop_child()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        return child.wait(timeout=None)
    finally:
        stop_child()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
