"""Find the functions a Python v2 Function App zip declares, by reading its source with `ast`.

The platform indexes an app by importing `function_app.py` and collecting the decorated
functions of its `FunctionApp` and of every blueprint it registers. The sandbox cannot run the
user's imports, so it reads the same facts statically: decorators such as `@app.route(...)`,
`@app.event_grid_trigger(arg_name=...)`, `@app.function_name(name=...)`, and
`app.register_functions(bp)` / `register_blueprint(bp)` followed into the module `bp` comes from.
"""

from __future__ import annotations

import ast
import zipfile
from dataclasses import dataclass, field

from sandbox.arm.models import FunctionInfo
from shared.pysource import parse_python

# Decorator method -> binding type of the trigger it declares.
TRIGGER_DECORATORS = {
    "route": "httpTrigger",
    "http_trigger": "httpTrigger",
    "schedule": "timerTrigger",
    "timer_trigger": "timerTrigger",
    "event_grid_trigger": "eventGridTrigger",
    "blob_trigger": "blobTrigger",
    "queue_trigger": "queueTrigger",
    "service_bus_queue_trigger": "serviceBusTrigger",
    "service_bus_topic_trigger": "serviceBusTrigger",
    "event_hub_message_trigger": "eventHubTrigger",
    "cosmos_db_trigger": "cosmosDBTrigger",
    "orchestration_trigger": "orchestrationTrigger",
    "activity_trigger": "activityTrigger",
    "entity_trigger": "entityTrigger",
}
# Non-trigger bindings we report alongside (name -> binding type).
OUTPUT_DECORATORS = {
    "durable_client_input": "durableClient",
    "event_grid_output": "eventGrid",
    "blob_output": "blob",
    "blob_input": "blob",
    "queue_output": "queue",
    "cosmos_db_output": "cosmosDB",
}
APP_FACTORIES = ("FunctionApp", "DFApp", "Blueprint", "DFBlueprint")
# Apps wrapping an ASGI/WSGI framework expose one catch-all HTTP function under this name.
WRAPPER_FACTORIES = ("AsgiFunctionApp", "WsgiFunctionApp")
WRAPPER_FUNCTION = "http_app_func"
# Where a package built for run-from-package keeps its dependencies (blueprints may live there).
SITE_PACKAGES = ".python_packages/lib/site-packages/"
DEFAULT_ARG = {"httpTrigger": "req", "timerTrigger": "timer"}


class IndexingError(Exception):
    """The app cannot be indexed (what the platform would log, in one sentence)."""


class NotStaticallyIndexable(IndexingError):
    """The source registers blueprints in a way reading it cannot follow (e.g. in a loop): only
    importing the package tells its functions."""


@dataclass
class _Module:
    path: str
    tree: ast.Module
    apps: set[str] = field(default_factory=set)  # names bound to a FunctionApp/Blueprint
    wrappers: set[str] = field(default_factory=set)  # names bound to an Asgi/WsgiFunctionApp
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name -> (module, attr)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _str_kw(call: ast.Call, name: str, pos: int | None = None) -> str | None:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if pos is not None and len(call.args) > pos:
        arg = call.args[pos]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


class ZipIndexer:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = {n.replace("\\", "/") for n in zf.namelist()}
        self._seen: set[tuple[str, str]] = set()

    def _load(self, path: str) -> _Module:
        try:
            source = self.zf.read(path).decode("utf-8-sig")
        except KeyError:
            raise IndexingError(f"{path} is not in the package") from None
        except UnicodeDecodeError:
            raise IndexingError(f"{path} is not UTF-8 text") from None
        try:
            tree = parse_python(source, filename=path)
        except SyntaxError as exc:
            raise IndexingError(f"SyntaxError in {path} line {exc.lineno}: {exc.msg}") from None
        mod = _Module(path, tree)
        package = path.rsplit("/", 1)[0].replace("/", ".") if "/" in path else ""
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                factory = _dotted(node.value.func).rsplit(".", 1)[-1]
                if factory in APP_FACTORIES or factory in WRAPPER_FACTORIES:
                    mod.apps.update(t.id for t in node.targets if isinstance(t, ast.Name))
                if factory in WRAPPER_FACTORIES:
                    mod.wrappers.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".") if package else []
                    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    mod.imports[alias.asname or alias.name] = (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    mod.imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0],
                        None,
                    )
        return mod

    def _module_file(self, dotted: str) -> str | None:
        base = dotted.replace(".", "/")
        for root in ("", SITE_PACKAGES):
            for candidate in (f"{root}{base}.py", f"{root}{base}/__init__.py"):
                if candidate in self.names:
                    return candidate
        return None

    def index(self, entry: str = "function_app.py") -> list[FunctionInfo]:
        functions = self._collect(self._load(entry), None)
        seen: set[str] = set()
        for fn in functions:
            if fn.name.lower() in seen:
                raise IndexingError(f"Function {fn.name} does not have a unique function name")
            seen.add(fn.name.lower())
        return functions

    def _collect(self, mod: _Module, only_app: str | None) -> list[FunctionInfo]:
        found: list[FunctionInfo] = []
        apps = {only_app} if only_app else mod.apps
        for node in mod.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                fn = self._function(node, apps)
                if fn is not None:
                    found.append(fn)
        if only_app is None:
            if mod.wrappers:
                found.append(
                    FunctionInfo(name=WRAPPER_FUNCTION, trigger="httpTrigger", param="req", route="/{*route}")
                )
            found.extend(self._registered_blueprints(mod))
        return found

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, apps: set[str]) -> FunctionInfo | None:
        name = node.name
        trigger: str | None = None
        arg: str | None = None
        route: str | None = None
        extra: list[dict[str, object]] = []
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call else dec
            if not isinstance(target, ast.Attribute) or _dotted(target.value) not in apps:
                continue
            method = target.attr
            if method == "function_name" and call is not None:
                name = _str_kw(call, "name", 0) or name
            elif method in TRIGGER_DECORATORS:
                trigger = TRIGGER_DECORATORS[method]
                if call is not None:
                    arg = _str_kw(call, "arg_name") or _str_kw(call, "trigger_arg_name")
                    if method == "route":
                        route = _str_kw(call, "route", 0)
            elif method == "generic_trigger" and call is not None:
                trigger = _str_kw(call, "type") or "genericTrigger"
                arg = _str_kw(call, "arg_name")
            elif method in OUTPUT_DECORATORS and call is not None:
                direction = "in" if method.endswith("_input") else "out"
                extra.append(
                    {
                        "type": OUTPUT_DECORATORS[method],
                        "direction": direction,
                        "name": _str_kw(call, "arg_name") or "",
                    }
                )
        if trigger is None:
            return None
        params = [a.arg for a in node.args.args]
        arg = arg or DEFAULT_ARG.get(trigger) or (params[0] if params else "input")
        return FunctionInfo(name=name, trigger=trigger, param=arg, route=route, extra_bindings=extra)

    def _registered_blueprints(self, mod: _Module) -> list[FunctionInfo]:
        found: list[FunctionInfo] = []
        for node in ast.walk(mod.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("register_functions", "register_blueprint") or not node.args:
                continue
            if _dotted(node.func.value) not in mod.apps:
                continue
            ref = node.args[0]
            target = self._resolve(mod, ref)
            if target is None:
                raise NotStaticallyIndexable(
                    f"{mod.path}: cannot find the module of blueprint '{_dotted(ref) or ast.unparse(ref)}' in the package"
                )
            path, var = target
            if path == mod.path:
                continue  # a blueprint defined in the same file was collected with its decorators
            key = (path, var)
            if key in self._seen:
                continue
            self._seen.add(key)
            sub = self._load(path)
            found.extend(self._collect(sub, var))
            found.extend(self._registered_blueprints(sub))
        return found

    def _resolve(self, mod: _Module, ref: ast.expr) -> tuple[str, str] | None:
        if isinstance(ref, ast.Name):
            if ref.id in mod.apps:
                return mod.path, ref.id
            imported = mod.imports.get(ref.id)
            if imported is None:
                return None
            module, attr = imported
            if attr is None:
                return None
            path = self._module_file(module)
            if path is not None:
                return path, attr
            return None
        if isinstance(ref, ast.Attribute) and isinstance(ref.value, ast.Name | ast.Attribute):
            owner = _dotted(ref.value)
            first = owner.split(".")[0]
            imported = mod.imports.get(first)
            if imported is None:
                return None
            module, attr = imported
            dotted = ".".join(x for x in (module, attr, *owner.split(".")[1:]) if x)
            path = self._module_file(dotted)
            if path is not None:
                return path, ref.attr
        return None


def index_zip(zf: zipfile.ZipFile) -> list[FunctionInfo]:
    """The functions of a v2 Python app zip; raises IndexingError with a reason when it cannot."""
    return ZipIndexer(zf).index()
