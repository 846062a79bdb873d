"""A warm Lambda execution environment: `python -I lambda_worker.py CODE_DIR HANDLER`.

Like the Lambda Python runtime it imports the handler module once (the init phase) from the
unpacked zip (the working directory and first on `sys.path`), then serves invocations one at a
time. Protocol on stdin/stdout, one JSON document per line:
- at start it writes `{"ready": true}` or `{"init_error": {...}}`;
- per request `{"event": ..., "context": {...}}` it writes `{"result": ...}` or `{"error": {...}}`
  with Lambda's error shape (`errorMessage`, `errorType`, `stackTrace`).
The handler's own prints go to stderr (the function's log), never into the protocol stream.
Standard library only: the function's zip provides everything else.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes and method of the runtime's context object that handlers use."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.function_name = str(data.get("function_name", ""))
        self.function_version = str(data.get("function_version", "$LATEST"))
        self.invoked_function_arn = str(data.get("invoked_function_arn", ""))
        self.memory_limit_in_mb = str(data.get("memory_limit_in_mb", "128"))
        self.aws_request_id = str(data.get("aws_request_id", ""))
        self.log_group_name = str(data.get("log_group_name", ""))
        self.log_stream_name = str(data.get("log_stream_name", ""))
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(data.get("deadline_ms", 0))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__)[1:],
    }


def main() -> int:
    code_dir, handler_spec = sys.argv[1], sys.argv[2]
    # The protocol keeps the real stdout; print() in the handler goes to the log (stderr).
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    # An editable install of this project would let the function import first-party modules its
    # zip lacks; Lambda has only the zip (and boto3), so a packaging gap must fail here too.
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path[:] = [p for p in sys.path if not p.startswith("__editable__")]

    def send(doc: dict[str, Any]) -> None:
        channel.write(json.dumps(doc) + "\n")
        channel.flush()

    module_name, _, function_name = handler_spec.rpartition(".")
    try:
        if not module_name:
            raise ValueError(f"Bad handler '{handler_spec}': expected module.function")
        module = importlib.import_module(module_name.replace("/", "."))
        handler = getattr(module, function_name)
    except ImportError as exc:
        send({"init_error": _error(exc, "Runtime.ImportModuleError")})
        return 1
    except AttributeError as exc:
        send({"init_error": _error(exc, "Runtime.HandlerNotFound")})
        return 1
    except Exception as exc:  # the init phase failed: every invocation reports it
        send({"init_error": _error(exc, "Runtime.UserCodeSyntaxError" if isinstance(exc, SyntaxError) else None)})
        return 1
    send({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        context = LambdaContext(request.get("context") or {})
        try:
            result = handler(request.get("event"), context)
        except Exception as exc:
            traceback.print_exc()
            send({"error": _error(exc)})
            continue
        try:
            send({"result": result})
        except (TypeError, ValueError) as exc:
            send({"error": {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError",
                            "stackTrace": []}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
