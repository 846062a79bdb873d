"""Local Functions host: runs a v2 Python function app (HTTP, Durable, Event Grid) on 127.0.0.1.

Azure Functions Core Tools cannot run here, so this host loads `function_app.py`, serves its HTTP
functions under `/api/`, the Durable HTTP API (`/runtime/webhooks/durabletask/` with the master or
the `durabletask_extension` key; the client's RPC base on a second loopback port under a
per-process secret), Event Grid delivery (`/runtime/webhooks/eventgrid`), and runs
orchestrations by driving the unmodified `azure-functions-durable` 1.x replay with histories kept in
SQLite (`research/durable-internals.md` is the protocol).

In-process use (one process hosts one app at a time; `environ` is applied to `os.environ` while
the host runs, which is how app settings reach functions on Azure)::

    from local_host import LocalHost
    with LocalHost(app_dir=Path("."), state_dir=Path(".state"), port=0, function_key="k",
                   activity_concurrency=8, environ={"SOME_SETTING": "x"}) as host:
        host.base_url        # "http://127.0.0.1:PORT"

Command line: `python -m control_plane serve [--app DIR] [--port N] [--state-dir DIR]
[--function-key K] [--activity-concurrency N]`.

Semantics worth knowing:
- Activities run at least once: a host killed mid-activity runs it again on restart.
- Timers use the real clock (UTC); a timer fires once its time has passed, also after a restart.
- Only the events the SDK reads are sent to its replay (see `durable.history.REPLAY_NEUTRAL`);
  the status API shows the full history as `historyEvents`.
- Timer triggers run on their NCRONTAB schedule (UTC) with `run_on_startup`, one run at a time per
  function (`timers.py`); `POST /admin/functions/{name}` with the master key runs a timer or
  Event Grid function now, as on Azure.
- Not emulated: rewind (501), entity-to-entity signals (logged), managed-identity tokens for
  `call_http`, other trigger types (logged and skipped).
"""

from .app_loader import AppLoadError, FunctionRegistry, load_app
from .host import HostError, LocalHost

__all__ = ["AppLoadError", "FunctionRegistry", "HostError", "LocalHost", "load_app"]
