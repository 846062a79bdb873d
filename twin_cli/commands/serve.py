"""`python -m control_plane serve`: run a function app on the local host until interrupted.

With `--sandbox`, the control plane gets its own infrastructure in the sandbox before it serves
(`twin_cli/infrastructure.py`): its vault, the `twin.*` events topic (publishing goes there) and,
once the host answers, the topic's subscription to `twin_events` and the watch on Azure Resource
Manager events. Each is retried; one that still fails is reported (and by `GET /api/health`)
and the host keeps serving: the engine applies recorded changes without the events route too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from shared.contracts import ControlPlaneSetting
from twin_cli.infrastructure import (
    EVENTS_FUNCTION,
    WATCH_FUNCTION,
    EventsTopic,
    InfrastructureError,
    ensure_events_subscription,
    ensure_events_topic,
    ensure_resource_watch,
    sandbox_settings,
    webhook_url,
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve", help="run a function app (HTTP, Durable, Event Grid) on 127.0.0.1",
        description="Load a v2 Python function app and serve it on 127.0.0.1. One app per process.")
    parser.add_argument("--app", type=Path, default=None,
                        help="folder holding function_app.py (default: the control plane itself)")
    parser.add_argument("--port", type=int, default=7071, help="port to listen on (0 picks a free one)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="folder for the SQLite state (default: a temporary folder, deleted on exit)")
    parser.add_argument("--function-key", default=None,
                        help=f"key for FUNCTION-level routes (default: env {ControlPlaneSetting.FUNCTIONS_HOST_KEY}, else generated)")
    parser.add_argument("--sandbox", type=Path, default=None, metavar="DIR",
                        help="point every cloud client at the running sandbox described by DIR/endpoints.json "
                             "(default: the real clouds, credentials from the environment)")
    parser.add_argument("--activity-concurrency", type=int, default=8,
                        help="concurrent activity functions (maxConcurrentActivityFunctions)")
    parser.add_argument("--fast-replay", action="store_true",
                        help="memoise the SDK's history timestamp parsing (faster long histories; "
                             "see local_host/durable/fast_replay.py)")
    parser.add_argument("--no-watch", action="store_true",
                        help="with --sandbox: do not subscribe this host to the sandbox's Azure Resource Manager "
                             "events (by default changes made outside a deployment are noticed and propagated)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from local_host import AppLoadError, HostError, LocalHost

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.port < 0 or args.port > 65535:
        print(f"error: --port: {args.port} is not a valid port")
        return 2
    if args.app is not None and not (args.app / "function_app.py").is_file():
        print(f"error: --app: {args.app / 'function_app.py'} does not exist")
        return 2
    environ: dict[str, str] = {}
    events_topic: EventsTopic | None = None
    if args.sandbox is not None:
        if not (args.sandbox / "endpoints.json").is_file():
            print(f"error: --sandbox: {args.sandbox / 'endpoints.json'} does not exist "
                  "(is `python -m sandbox serve` running?)")
            return 2
        # The same app setting the deployed app would get; activities/clouds.py reads it.
        environ[ControlPlaneSetting.SANDBOX_DIR] = str(args.sandbox.resolve())
        if args.app is None:  # the control plane itself (another app has no use for these)
            try:
                environ.update(sandbox_settings(environ))
            except InfrastructureError as exc:
                print(f"error: {exc}")  # nothing runs yet: without its vault, secrets would go to Durable state
                return 1
            events_topic = _events_topic(environ)
    host = LocalHost(app_dir=args.app, state_dir=args.state_dir, port=args.port,
                     function_key=args.function_key, activity_concurrency=args.activity_concurrency,
                     fast_replay=args.fast_replay, environ=environ)
    try:
        host.start()
    except (AppLoadError, HostError) as exc:
        print(f"error: {exc}")
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # From here on the host may be resuming orchestrations: whatever happens, it is stopped
    # cleanly (their state stays resumable), never left to die with the interpreter.
    try:
        assert host.registry is not None
        print(f"Serving {host.app_dir} on {host.base_url}", flush=True)
        if host.key_generated:
            print(f"Function key (generated): {host.function_key}", flush=True)
        print("Functions:", flush=True)
        for line in host.registry.summary():
            print(line, flush=True)
        if args.sandbox is not None:
            _route_events(host, environ, events_topic, watch=not args.no_watch, stop=stop)
        # One write: the line must not interleave with log records written to the same pipe.
        sys.stdout.write(f"READY {host.base_url}\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        host.stop()
    return 0


def _events_topic(environ: dict[str, str]) -> EventsTopic | None:
    """The `twin.*` events topic for the app settings (unless the environment names an endpoint)."""
    import os

    from activities.clouds import clouds_from_environ

    if os.environ.get(ControlPlaneSetting.EVENTS_ENDPOINT):
        return None
    try:
        topic = ensure_events_topic(clouds_from_environ({**os.environ, **environ}))
    except InfrastructureError as exc:
        print(f"warning: twin events are not published: {exc}. Recorded changes still reach their "
              "consumers (each operation applies the consumers behind); GET /api/health reports it.", flush=True)
        return None
    environ[ControlPlaneSetting.EVENTS_ENDPOINT] = topic.endpoint
    environ[ControlPlaneSetting.EVENTS_KEY] = topic.key
    return topic


def _route_events(host: object, environ: dict[str, str], topic: EventsTopic | None, watch: bool,
                  stop: threading.Event) -> None:
    """Once the host answers (Event Grid validates a webhook before it delivers): the topic's
    subscription to `twin_events` and the watch. A failure is reported, never raised."""
    from activities.clouds import clouds_from_environ
    from local_host import LocalHost

    assert isinstance(host, LocalHost) and host.registry is not None
    clouds = clouds_from_environ(environ)
    if topic is not None and EVENTS_FUNCTION in host.registry.eventgrid:
        try:
            ensure_events_subscription(clouds, topic, webhook_url(host.base_url, host.function_key, EVENTS_FUNCTION))
            print(f"Routing twin events through {topic.topic_id}", flush=True)
        except InfrastructureError as exc:
            print(f"warning: {exc}. GET /api/health reports it.", flush=True)
    if watch and WATCH_FUNCTION in host.registry.eventgrid and not stop.is_set():
        try:
            result = ensure_resource_watch(clouds, webhook_url(host.base_url, host.function_key))
            print(f"Watching Azure Resource Manager events through {result.topic_id}", flush=True)
        except InfrastructureError as exc:
            print(f"warning: changes made outside a deployment are not noticed: {exc}. "
                  "GET /api/health reports it.", flush=True)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m twin_cli.commands.serve")
    register(_parser.add_subparsers(dest="command"))
    raise SystemExit(run(_parser.parse_args(["serve", *__import__("sys").argv[1:]])))
