"""`python -m control_plane install` / `uninstall`: the control plane deploys (and removes) itself.

One code path: the control plane's own resources are a plan (`shared/plan/control_plane.py`)
walked by the same `deploy_twin` through the same providers that deploy twins, on a local host in
this process, with the operator's credentials (the Azure and AWS credential chains; with
`--sandbox DIR`, the sandbox). The outcome is recorded like a twin's state, in this machine's
state folder (`--state-dir`, default `$XDG_STATE_HOME/twin-control-plane/{subscription}/{name}`,
or inside the sandbox's folder), so:

- a second `install` with nothing changed reads and writes nothing new (every provider finds its
  resource current; the package's SHA-256, kept as a tag on the app, says it is deployed);
- `upgrade` is `install` again with new code: only the package (and what changed) is written;
- `uninstall` deletes what `install` recorded, dependents first (`destroy_twin`).

`install` prints the app's URL and how to get its key; `--json` prints `{"url", "key", ...}`.
Exit codes: 0 done, 1 the operation failed, 2 invalid input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from shared.contracts import AZURE_TOKEN_EXCHANGE_AUDIENCE, ControlPlaneSetting
from shared.engine.infrastructure import RESOURCE_GROUP, InstallOutput
from twin_cli.commands.engine_client import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    PROJECT_ROOT,
    CliError,
    Target,
    _free_port,
    follow,
    print_errors,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
BACKENDS = ("azure-storage", "durable-task-scheduler")
ACTIVE = ("Running", "Pending", "ContinuedAsNew")
HEALTH_WAIT_SECONDS = 120.0


def register(subparsers: Any) -> None:
    for command, func, help_text in (("install", run_install, "deploy (or upgrade) the control plane itself"),
                                     ("uninstall", run_uninstall, "remove everything install made")):
        parser = subparsers.add_parser(command, help=help_text, description=__doc__.split("\n\n", 1)[0])
        parser.add_argument("--name", default=RESOURCE_GROUP,
                            help=f"the control plane's name and resource group (default {RESOURCE_GROUP})")
        parser.add_argument("--subscription", default=os.environ.get(ControlPlaneSetting.AZURE_SUBSCRIPTION_ID),
                            help=f"Azure subscription (default: env {ControlPlaneSetting.AZURE_SUBSCRIPTION_ID}; "
                                 "the sandbox's with --sandbox)")
        parser.add_argument("--sandbox", metavar="DIR", type=Path,
                            help="install into the running sandbox whose endpoints.json is in DIR")
        parser.add_argument("--state-dir", type=Path,
                            help="where this machine keeps the record of the installation (see above)")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
        if command == "install":
            parser.add_argument("--location", default="westeurope", help="Azure region (default westeurope)")
            parser.add_argument("--target-subscription", action="append", default=[], metavar="ID",
                                help="a subscription twins are deployed to (Contributor and User Access "
                                     "Administrator there; repeatable; default: --subscription)")
            parser.add_argument("--durable-backend", choices=BACKENDS, default="azure-storage",
                                help="Durable Functions' storage: Azure Storage (default) or the Durable Task Scheduler")
            parser.add_argument("--aws-account", metavar="ID",
                                help="let the control plane reach this AWS account by web identity federation "
                                     "(run with that account's credentials: creates an IAM OIDC provider and role)")
            parser.add_argument("--aws-region", default=os.environ.get(ControlPlaneSetting.AWS_REGION) or "us-east-1",
                                help="the control plane's default AWS region (default: env AWS_REGION, else us-east-1)")
            parser.add_argument("--aws-audience", default=None,
                                help=f"audience of the identity token AWS accepts (default {AZURE_TOKEN_EXCHANGE_AUDIENCE})")
        parser.set_defaults(func=func)


# --- where and as whom ---------------------------------------------------------------------------


def _environ(args: argparse.Namespace) -> dict[str, str]:
    """The app settings of the local host that runs the operation: the operator's credentials
    (the seam's default chains), never a role or endpoint meant for the installed app."""
    environ: dict[str, str] = {
        ControlPlaneSetting.EVENTS_ENDPOINT: "",
        ControlPlaneSetting.KEY_VAULT_URL: "",
        ControlPlaneSetting.AWS_ROLE_ARN: "",
        ControlPlaneSetting.ALLOW_INLINE_SECRETS: "true",
    }
    if args.sandbox is not None:
        if not (args.sandbox / "endpoints.json").is_file():
            raise CliError(f"--sandbox {args.sandbox}: no endpoints.json there (is `python -m sandbox serve` running?)")
        environ[ControlPlaneSetting.SANDBOX_DIR] = str(args.sandbox.resolve())
    else:
        if not args.subscription:
            raise CliError(f"--subscription is required (or set {ControlPlaneSetting.AZURE_SUBSCRIPTION_ID})")
        environ[ControlPlaneSetting.AZURE_SUBSCRIPTION_ID] = args.subscription
    return environ


def _subscription(environ: dict[str, str]) -> str:
    from activities.clouds import clouds_from_environ

    return clouds_from_environ({**os.environ, **environ}).azure_subscription_id()


def _state_dir(args: argparse.Namespace, subscription: str) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    if args.sandbox is not None:
        return args.sandbox.resolve() / "control-plane-install" / args.name
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "twin-control-plane" / subscription / args.name


@contextmanager
def _host(environ: dict[str, str], state_dir: Path) -> Iterator[Target]:
    """The control plane (this project) on a local host in this process, state in `state_dir`."""
    from local_host import LocalHost

    host = LocalHost(app_dir=PROJECT_ROOT, state_dir=state_dir / "host", port=_free_port(), environ=environ)
    host.start()
    try:
        yield Target(host.base_url, host.function_key)
    finally:
        host.stop()


def _durable(target: Target, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A call of the host's Durable HTTP API (the master key opens it)."""
    import urllib.error
    import urllib.request

    sep = "&" if "?" in path else "?"
    url = f"{target.base}/runtime/webhooks/durabletask/{path}{sep}code={urllib.parse.quote(target.key)}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    return status, json.loads(raw) if raw else None


def _wait_for_earlier(target: Target, name: str, console: Console, as_json: bool) -> None:
    """An operation of an earlier run that was stopped resumes when the host starts: let it end."""
    status, instances = _durable(target, "GET", "instances?runtimeStatus=" + ",".join(ACTIVE))
    if status != 200:
        return
    for instance in instances or []:
        iid = str(instance.get("instanceId", ""))
        if iid.startswith(f"twin:{name}:"):
            console.print(f"[dim]an earlier operation ({iid}) resumed; waiting for it to end...[/dim]")
            follow(target, iid, console, as_json)


# --- install ----------------------------------------------------------------------------------------


def _options(args: argparse.Namespace, environ: dict[str, str], subscription: str, state_dir: Path,
             console: Console) -> Any:
    from shared.plan.control_plane import AwsSide, InstallOptions
    from twin_cli import package

    try:
        built = package.build(args.durable_backend)
    except package.PackageError as exc:
        raise CliError(f"the control plane's package: {exc}") from None
    path = package.write(built, state_dir / "packages")
    aws = None
    if args.aws_account:
        if not re.fullmatch(r"\d{12}", args.aws_account):
            raise CliError(f"--aws-account: {args.aws_account!r} is not a 12-digit AWS account id")
        from activities.clouds import clouds_from_environ

        tenant = clouds_from_environ({**os.environ, **environ}).azure_tenant_id()
        aws = AwsSide(args.aws_account, args.aws_region, tenant, **({"audience": args.aws_audience}
                                                                     if args.aws_audience else {}))
    extra: dict[str, str] = {}
    if args.sandbox is not None:
        # The installed app reaches the sandbox's clouds, as every local command does.
        extra[ControlPlaneSetting.SANDBOX_DIR] = environ[ControlPlaneSetting.SANDBOX_DIR]
    return InstallOptions(
        name=args.name, location=args.location, subscription_id=subscription, package_sha256=built.sha256,
        package_path=str(path), functions=built.functions, durable_backend=args.durable_backend,
        target_subscriptions=tuple(args.target_subscription), aws=aws, extra_settings=extra)


def _app_key(environ: dict[str, str], resource_group: str, app: str) -> str:
    """The app's `default` function key (read with the operator's credentials)."""
    from azure.mgmt.web import WebSiteManagementClient

    from activities.clouds import clouds_from_environ

    cl = clouds_from_environ({**os.environ, **environ})
    keys = cl.azure_mgmt_client(WebSiteManagementClient).web_apps.list_host_keys(resource_group, app)
    return str((keys.function_keys or {}).get("default") or "")


def run_install(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if not NAME_RE.fullmatch(args.name):
            raise CliError(f"--name: {args.name!r} must be 3-42 lowercase letters, digits and hyphens, starting with "
                           "a letter and not ending with a hyphen")
        if args.aws_account is None and args.aws_audience:
            raise CliError("--aws-audience needs --aws-account")
        environ = _environ(args)
        subscription = _subscription(environ)
        state_dir = _state_dir(args, subscription)
        options = _options(args, environ, subscription, state_dir, console)
        from shared.engine.orchestrations import DeployInput, EngineOptions
        from shared.engine.plan import engine_plan_of
        from shared.plan.control_plane import build_control_plane_plan, resource_names

        plan = engine_plan_of(build_control_plane_plan(options))
        names = resource_names(options)
        with _host(environ, state_dir) as target:
            _wait_for_earlier(target, args.name, console, args.json)
            instance = f"twin:{args.name}:install:{os.urandom(6).hex()}"
            status, answer = _durable(target, "POST", f"orchestrators/deploy_twin/{urllib.parse.quote(instance, safe='')}",
                                      DeployInput(plan, EngineOptions()).to_dict())
            if status != 202:
                raise CliError(f"the install could not start: {answer}")
            code, view = follow(target, instance, console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    if code != EXIT_OK:
        return _failed(console, view, args.json)
    url = str((view.get("outputs") or {}).get(InstallOutput.APP_URL, {}).get("value") or "")
    key = _app_key(environ, names["group"], names["app"])
    health = _health(environ, url, key, console, args.json)
    summary = (view.get("result") or {}).get("summary") or view.get("summary") or {}
    outcome = {"url": url, "key": key, "name": args.name, "subscription": subscription,
               "resource_group": names["group"], "app": names["app"], "durable_backend": args.durable_backend,
               "package_sha256": options.package_sha256, "operation": view.get("id") or instance,
               "state_dir": str(state_dir), "summary": summary, "health": health}
    if args.json:
        print(json.dumps(outcome, indent=2))
        return EXIT_OK
    out = Console()
    out.print(f"[bold]The control plane runs at {url}[/bold]")
    if health is None or not health.get("healthy"):
        out.print(f"[yellow]GET /api/health: {json.dumps(health)[:1000] if health else 'no answer yet'}[/yellow]")
    out.print(f"Its function key: `az functionapp keys list -g {names['group']} -n {names['app']} "
              f"--query functionKeys.default -o tsv` (or `install --json`).")
    out.print(f"Deploy a twin: python -m control_plane deploy SPEC --url {url} --key <key>")
    return EXIT_OK


def _health(environ: dict[str, str], url: str, key: str, console: Console, as_json: bool,
            timeout: float = HEALTH_WAIT_SECONDS) -> dict[str, Any] | None:
    """The installed app's `GET /api/health` once it answers (a new app starts on its first
    request, and a new package restarts it), or None if it did not within `timeout`."""
    import urllib.error
    import urllib.request

    from activities.clouds import clouds_from_environ

    context = clouds_from_environ({**os.environ, **environ}).ssl_context()
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(f"{url}/api/health", headers={"x-functions-key": key})
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as resp:
                return dict(json.loads(resp.read()))
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def _failed(console: Console, view: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(view, indent=2))
    else:
        for error in (view or {}).get("errors", []):
            console.print(f"[red]{error.get('resource') or 'error'}[/red]: {error.get('message')}")
    return EXIT_FAILED


# --- uninstall --------------------------------------------------------------------------------------


def run_uninstall(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        environ = _environ(args)
        subscription = _subscription(environ)
        state_dir = _state_dir(args, subscription)
        if not (state_dir / "host").is_dir():
            raise CliError(f"no installation of {args.name!r} is recorded in {state_dir} (install records it there; "
                           "give --state-dir if it was installed from elsewhere)")
        with _host(environ, state_dir) as target:
            _wait_for_earlier(target, args.name, console, args.json)
            status, answer = target.call("DELETE", f"twins/{args.name}")
            if status == 404:
                raise CliError(f"nothing of the control plane {args.name!r} is recorded in {state_dir}")
            if status != 202:
                print_errors(console, answer)
                return EXIT_FAILED
            code, view = follow(target, answer["id"], console, args.json)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    if code != EXIT_OK:
        return _failed(console, view, args.json)
    if args.json:
        print(json.dumps({"name": args.name, "subscription": subscription, "removed": True,
                          "summary": view.get("summary") or {}, "finished": time.time()}, indent=2))
    else:
        Console().print(f"[bold]Removed the control plane {args.name} ({subscription}).[/bold]")
    return EXIT_OK
