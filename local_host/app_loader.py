"""Load a v2-programming-model function app and index its functions by trigger.

The app folder goes first on `sys.path` and its `function_app.py` is imported under a unique
module name, so one process can load several apps one after another (one at a time: app
settings are process-wide environment variables, as on Azure).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import json
import logging
import re
import sys
import threading
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

log = logging.getLogger("local_host")
_counter = itertools.count(1)


class AppLoadError(Exception):
    """The app folder cannot be loaded; the message names the path and the cause."""


@dataclass
class HttpRoute:
    function_name: str
    route: str
    methods: list[str] | None
    auth_level: str
    fn: Callable[..., Any]
    trigger_param: str
    client_param: str | None
    pattern: re.Pattern[str]
    extra_outputs: list[str] = field(default_factory=list)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


@dataclass
class Invocable:
    function_name: str
    fn: Callable[..., Any]
    trigger_param: str
    client_param: str | None = None


@dataclass
class FunctionRegistry:
    app_dir: Path
    module_name: str
    orchestrators: dict[str, Invocable] = field(default_factory=dict)
    activities: dict[str, Invocable] = field(default_factory=dict)
    entities: dict[str, Invocable] = field(default_factory=dict)  # keys lower-cased, like DTFx
    http_routes: list[HttpRoute] = field(default_factory=list)
    eventgrid: dict[str, Invocable] = field(default_factory=dict)
    timers: dict[str, str] = field(default_factory=dict)  # name -> schedule as declared
    timer_functions: dict[str, Any] = field(default_factory=dict)  # name -> timers.TimerFunction (run)
    timer_errors: dict[str, str] = field(default_factory=dict)  # name -> why its schedule is invalid
    skipped: dict[str, str] = field(default_factory=dict)  # name -> trigger type
    renamed: dict[str, str] = field(default_factory=dict)  # python name -> durable name

    def summary(self) -> list[str]:
        lines = [f"  {r.function_name}: [{','.join(r.methods or ['ALL'])}] /api/{r.route} ({r.auth_level})"
                 for r in self.http_routes]
        lines += [f"  {n}: orchestrationTrigger" for n in self.orchestrators]
        lines += [f"  {n}: activityTrigger" for n in self.activities]
        lines += [f"  {n}: entityTrigger" for n in self.entities]
        lines += [f"  {n}: eventGridTrigger" for n in self.eventgrid]
        lines += [f"  {n}: timerTrigger ({s})" for n, s in self.timers.items() if n in self.timer_functions]
        lines += [f"  {n}: timerTrigger; NOT scheduled: {e}" for n, e in self.timer_errors.items()]
        lines += [f"  {n}: {t}; not supported by the local host, skipped" for n, t in self.skipped.items()]
        return lines


def route_pattern(route: str) -> re.Pattern[str]:
    """ASP.NET-style route template to a regex: `{name}`, `{id?}`, `{id:int}`, `{*rest}`."""
    parts = [p for p in route.strip("/").split("/") if p != ""]
    regex = ""
    for part in parts:
        whole = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}", part)
        if whole:
            catch_all, name, optional = whole.group(1), whole.group(2), whole.group(3)
            body = ".+" if catch_all else "[^/]+"
            if optional or catch_all:
                regex += f"(?:/(?P<{name}>{body}))?"
            else:
                regex += f"/(?P<{name}>{body})"
            continue
        segment = ""
        pos = 0
        for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?\}", part):
            segment += re.escape(part[pos:m.start()]) + f"(?P<{m.group(1)}>[^/]+?)"
            pos = m.end()
        segment += re.escape(part[pos:])
        regex += "/" + segment
    return re.compile(regex or "/?", re.IGNORECASE)


def load_app(app_dir: Path) -> FunctionRegistry:
    app_dir = app_dir.resolve()
    source = app_dir / "function_app.py"
    if not source.is_file():
        raise AppLoadError(f"{source}: no function_app.py in the app folder")
    module_name = f"_local_function_app_{next(_counter)}"
    if str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{source}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise AppLoadError(f"{source}: import failed: {type(exc).__name__}: {exc}") from exc
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if not apps:
        raise AppLoadError(f"{source}: no FunctionApp/DFApp object at module level")
    registry = FunctionRegistry(app_dir=app_dir, module_name=module_name)
    try:
        functions = apps[0].get_functions()  # once only: a second call raises (research 2.2)
    except Exception as exc:
        raise AppLoadError(f"{source}: invalid function definitions: {exc}") from exc
    for function in functions:
        _check_parameters(function, source)
    for function in functions:
        _index(registry, function)
    return registry


def _check_parameters(function: Any, source: Path) -> None:
    """The Python worker's indexing check (`functions.py` of azure-functions-python-worker):
    every parameter of the function the app registered is a binding of that name, except
    `context` (then an `azure.functions.Context`), and every binding is a parameter. On Azure a
    mismatch fails the indexing of the whole app, so the host refuses to load it, saying why.
    Durable's generated handlers take `context`: an orchestrator or entity declared with another
    `context_name` cannot be bound, on Azure as here (microsoft/durabletask-python#171)."""
    name = function.get_function_name()
    fn = function.get_user_function()
    try:
        params = dict(inspect.signature(fn).parameters)
        annotations = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return  # not introspectable: the worker would report it; the call will show it here
    raw = [json.loads(b) for b in function.get_raw_bindings()]
    bindings = {b["name"] for b in raw} - {"$return"}
    trigger: dict[str, Any] = next((b for b in raw if str(b.get("type", "")).lower().endswith("trigger")), {})
    if "context" in params and "context" not in bindings:
        params.pop("context")
        anno = annotations.get("context")
        if anno is not None and getattr(anno, "__name__", None) != "Context":
            hint = ""
            if trigger.get("type") in ("orchestrationTrigger", "entityTrigger") and trigger.get("name") != "context":
                hint = (f"; the Durable SDK's generated handler takes 'context', so declare "
                        f"context_name=\"context\" instead of {trigger.get('name')!r}")
            raise AppLoadError(f"{source}: cannot load the {name} function: the 'context' parameter is expected to "
                               f"be of type azure.functions.Context, got {getattr(anno, '__name__', anno)}{hint} "
                               "(the Functions worker refuses this app on Azure too)")
    unbound = sorted(set(params) - bindings)
    if unbound:
        raise AppLoadError(f"{source}: cannot load the {name} function: parameters {unbound} are not bindings "
                           "(the Functions worker refuses this app on Azure too)")
    missing = sorted(bindings - set(params))
    if missing:
        hint = ""
        if trigger.get("type") in ("orchestrationTrigger", "entityTrigger"):
            hint = ("; the Durable SDK's generated handler takes 'context', so declare "
                    "context_name=\"context\"")
        raise AppLoadError(f"{source}: cannot load the {name} function: bindings {missing} are not parameters of "
                           f"the function{hint} (the Functions worker refuses this app on Azure too)")


def _index(registry: FunctionRegistry, function: Any) -> None:
    name = function.get_function_name()
    bindings = [json.loads(b) for b in function.get_raw_bindings()]
    trigger = next((b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")), None)
    fn = function.get_user_function()
    if trigger is None:
        registry.skipped[name] = "no trigger"
        log.warning("function %s has no trigger; skipped", name)
        return
    kind = trigger["type"]
    client = next((b["name"] for b in bindings if b.get("type") == "durableClient"), None)
    py_name = getattr(getattr(fn, "orchestrator_function", None) or getattr(fn, "client_function", None) or fn,
                      "__name__", name)
    if kind == "orchestrationTrigger":
        durable_name = trigger.get("orchestration") or name
        user = getattr(fn, "orchestrator_function", None)
        if user is not None and (inspect.iscoroutinefunction(user) or inspect.isasyncgenfunction(user)):
            # Research 1.3 / issue #471: fails on Azure with "async_generator is not JSON serializable".
            log.warning("orchestrator %s is declared async def; Durable Functions 1.x orchestrators must be "
                        "plain generator functions and this one will fail when it runs", durable_name)
        registry.orchestrators[durable_name] = Invocable(durable_name, fn, trigger["name"])
        if py_name != durable_name:
            registry.renamed[py_name] = durable_name
    elif kind == "activityTrigger":
        durable_name = trigger.get("activity") or name
        registry.activities[durable_name] = Invocable(durable_name, fn, trigger["name"])
        if py_name != durable_name:
            registry.renamed[py_name] = durable_name
    elif kind == "entityTrigger":
        durable_name = trigger.get("entityName") or name
        registry.entities[durable_name.lower()] = Invocable(durable_name, fn, trigger["name"])
    elif kind == "httpTrigger":
        route = trigger.get("route") or name
        methods = [str(m).upper() for m in trigger["methods"]] if trigger.get("methods") else None
        auth = str(trigger.get("authLevel") or "FUNCTION").upper()
        outputs = [b["name"] for b in bindings if b.get("direction") == "OUT" and b.get("type") != "http"]
        registry.http_routes.append(HttpRoute(name, route.strip("/"), methods, auth, fn, trigger["name"], client,
                                              route_pattern(route), outputs))
    elif kind == "eventGridTrigger":
        registry.eventgrid[name] = Invocable(name, fn, trigger["name"], client)
    elif kind == "timerTrigger":
        from .timers import ScheduleError, TimerFunction, parse_schedule

        raw = str(trigger.get("schedule"))
        registry.timers[name] = raw
        try:
            schedule = parse_schedule(raw)
        except ScheduleError as exc:
            # As on Azure: the function is in error, the rest of the app runs.
            registry.timer_errors[name] = str(exc)
            log.error("timer function %s: %s; it will not run", name, exc)
            return
        registry.timer_functions[name] = TimerFunction(name, fn, trigger["name"], schedule,
                                                       bool(trigger.get("runOnStartup", False)))
    else:
        registry.skipped[name] = kind
        log.warning("function %s has trigger type %s, which the local host does not support; skipped", name, kind)


class LocalContext(func.Context):
    """The `context` argument the worker passes (only ids and names matter to user code)."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class DiscardedOut(func.Out[Any]):
    """An output binding the local host cannot deliver: the value is kept and a warning logged."""

    def __init__(self, function_name: str, binding: str) -> None:
        self._value: Any = None
        self._where = f"{function_name}.{binding}"

    def set(self, val: Any) -> None:
        log.warning("output binding %s is not supported by the local host; value discarded", self._where)
        self._value = val

    def get(self) -> Any:
        return self._value


@functools.lru_cache(maxsize=1024)
def parameter_names(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The names of a function's parameters (None when it has no signature), read once per
    function as the worker reads its bindings once at load: `inspect.signature` costs about a
    millisecond of the one GIL on every invocation otherwise."""
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def build_kwargs(fn: Callable[..., Any], function_name: str, app_dir: Path, given: dict[str, Any],
                 outputs: list[str] | None = None) -> dict[str, Any]:
    """Fill the parameters the worker would: the given ones, `context`, and output bindings."""
    kwargs = dict(given)
    params = parameter_names(fn)
    if params is None:
        return kwargs
    if "context" in params and "context" not in kwargs:
        kwargs["context"] = LocalContext(function_name, str(app_dir))
    for out in outputs or []:
        if out in params and out not in kwargs:
            kwargs[out] = DiscardedOut(function_name, out)
    return kwargs
