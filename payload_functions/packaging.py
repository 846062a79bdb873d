"""Reproducible deployment packages for the payload functions.

- One zip per Azure Function App (`build_azure_app_package`): a generated root `function_app.py`
  registering exactly the blueprints the app hosts, `host.json` (extension bundle
  `[4.*, 5.0.0)`), `requirements.txt` with only what those functions import, and the first-party
  modules they import (the import closure, computed from the source with `ast`). Never one zip per
  function: each zip deploy replaces the whole app.
- One zip per Lambda (`build_lambda_package`): `lambda_function.py` re-exporting the function's
  handler, so the entry point is always `lambda_function.handler`, plus the import closure. boto3
  is provided by the Lambda runtime and is not vendored.
- One zip per Cloud Function (`build_cloud_function_package`): `main.py` re-exporting the
  function's entry point (`hot-writer` -> `hot_writer`, its functions-framework target),
  `requirements.txt` (functions-framework and what the function imports; Cloud Build installs
  it), plus the import closure.

The same input gives byte-identical output: entries sorted, fixed timestamps (1980-01-01),
fixed permissions (0644), fixed compression. `Package.sha256` is the base64 SHA-256 of the zip,
the same form as Lambda's `CodeSha256`, so providers compare it with what is deployed.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.bundle import deterministic_zip, folder_digest
from shared.contracts import ROUTE_PREFIX, Function
from shared.pysource import parse_python
from shared.resources import UserCodeRef
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig
from shared.resources.gcp import CloudFunctionConfig

SOURCE_ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("payload_functions", "shared")
EXTENSION_BUNDLE = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
LAMBDA_ENTRY_MODULE = "lambda_function"
LAMBDA_HANDLER = f"{LAMBDA_ENTRY_MODULE}.handler"
USER_CODE_PACKAGE = "user_code"
"""Where a package carries users' code (`payload_functions.core.usercode` reads it)."""

# Import name prefix -> requirement line (kept in step with pyproject.toml).
REQUIREMENTS: dict[str, str] = {
    "azure.functions": "azure-functions>=1.24,<2",
    "azure.core": "azure-core>=1.30",
    "azure.identity": "azure-identity>=1.17",
    "azure.digitaltwins": "azure-digitaltwins-core>=1.3",
    "azure.cosmos": "azure-cosmos>=4.7",
    "azure.storage.blob": "azure-storage-blob>=12.20",
    "boto3": "boto3>=1.35",
    "botocore": "boto3>=1.35",
    "functions_framework": "functions-framework>=3.8,<4",
    "google.api_core": "google-api-core>=2.20",
    "google.auth": "google-auth[requests]>=2.30",
    "google.oauth2": "google-auth[requests]>=2.30",
    "google.cloud.firestore": "google-cloud-firestore>=2.19",
    "google.cloud.storage": "google-cloud-storage>=2.18",
    "google.cloud.pubsub": "google-cloud-pubsub>=2.23",
    "google.cloud.pubsub_v1": "google-cloud-pubsub>=2.23",
}
LAMBDA_RUNTIME_PROVIDES = frozenset({"boto3>=1.35"})
NAMESPACE_PACKAGES = frozenset({"azure", "azure.storage", "azure.digitaltwins", "google", "google.cloud"})
"""Import names that are namespaces shared by several distributions (no requirement of their own)."""
CLOUD_FUNCTION_MAIN = "main.py"
CLOUD_FUNCTION_RUNTIME = "functions-framework>=3.8,<4"


class PackagingError(ValueError):
    """The package cannot be built; the message says which function or module and why."""


@dataclass(frozen=True)
class Package:
    name: str
    data: bytes = field(repr=False)
    sha256: str
    """Base64 SHA-256 of `data` (Lambda's `CodeSha256` form)."""
    files: tuple[str, ...]
    functions: tuple[str, ...]
    requirements: tuple[str, ...]
    entry_point: str | None = None

    @property
    def sha256_hex(self) -> str:
        return base64.b64decode(self.sha256).hex()

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": len(self.data), "files": list(self.files),
                "functions": list(self.functions), "requirements": list(self.requirements),
                "entry_point": self.entry_point}


def module_name(provider: str, function: Function | str) -> str:
    return f"payload_functions.{provider}.{str(Function(function)).replace('-', '_')}"


def _module_file(dotted: str, root: Path = SOURCE_ROOT) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def supported_functions(provider: str) -> tuple[Function, ...]:
    """The functions that have an implementation on `provider` (`aws`, `azure` or `gcp`)."""
    return tuple(f for f in Function if _module_file(module_name(provider, f)) is not None)


def _function(value: Function | str, provider: str) -> Function:
    try:
        fn = Function(value)
    except ValueError:
        known = ", ".join(str(f) for f in supported_functions(provider))
        raise PackagingError(f"unknown payload function {value!r}; known on {provider}: {known}") from None
    if fn not in supported_functions(provider):
        known = ", ".join(str(f) for f in supported_functions(provider))
        raise PackagingError(f"payload function {fn} has no {provider} implementation; available: {known}")
    return fn


@dataclass
class Closure:
    files: dict[str, Path] = field(default_factory=dict)
    """Archive path -> source file."""
    third_party: set[str] = field(default_factory=set)
    """Dotted import names outside the standard library and first-party packages."""


def _imports(tree: ast.AST, package: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):  # includes imports inside functions (the lazy SDK imports)
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.append(base)
            # `from pkg import module` imports a module, not an attribute.
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


@functools.lru_cache(maxsize=512)
def _file_imports(path: str, mtime_ns: int, package: str, root: str) -> tuple[str, ...]:
    """Imports of one source file (cached per modification time: plans build many packages)."""
    try:
        tree = parse_python(Path(path).read_bytes(), filename=path)
    except SyntaxError as exc:
        raise PackagingError(f"{Path(path).relative_to(root)} line {exc.lineno}: {exc.msg}") from None
    return tuple(_imports(tree, package))


def import_closure(entries: Iterable[str], root: Path = SOURCE_ROOT, extra_sources: Mapping[str, bytes] = {}) -> Closure:
    """First-party modules reachable from `entries` (dotted names), with their packages'
    `__init__.py`, and the third-party imports on the way."""
    closure = Closure()
    todo = list(entries)
    seen: set[str] = set()
    for source in extra_sources.values():
        todo.extend(_imports(parse_python(source), ""))
    while todo:
        name = todo.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top in FIRST_PARTY:
            path = _module_file(name, root)
            if path is None:
                continue  # `from pkg import attribute`: the attribute is not a module
            parts = name.split(".")
            for i in range(1, len(parts)):
                init = _module_file(".".join(parts[:i]), root)
                if init is not None:
                    closure.files[init.relative_to(root).as_posix()] = init
                    todo.append(".".join(parts[:i]))
            closure.files[path.relative_to(root).as_posix()] = path
            package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            todo.extend(_file_imports(str(path), path.stat().st_mtime_ns, package, str(root)))
        elif top not in sys.stdlib_module_names and top != "__future__":
            closure.third_party.add(name)
    return closure


def requirements_for(third_party: Iterable[str], what: str) -> tuple[str, ...]:
    lines: set[str] = set()
    for name in third_party:
        match = max((p for p in REQUIREMENTS if name == p or name.startswith(p + ".")), key=len, default=None)
        if match is None:
            if name in NAMESPACE_PACKAGES:
                continue
            raise PackagingError(f"{what} imports {name!r}, which has no entry in packaging.REQUIREMENTS")
        lines.add(REQUIREMENTS[match])
    return tuple(sorted(lines))


def _package(name: str, files: Mapping[str, bytes], functions: Iterable[str], requirements: Iterable[str],
             entry_point: str | None = None) -> Package:
    data = deterministic_zip(files)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    return Package(name, data, digest, tuple(sorted(files)), tuple(functions), tuple(requirements), entry_point)


def host_json() -> bytes:
    doc = {
        "version": "2.0",
        "extensionBundle": EXTENSION_BUNDLE,
        "extensions": {"http": {"routePrefix": ROUTE_PREFIX}},
        "logging": {"logLevel": {"default": "Information"}},
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def function_app_source(functions: Iterable[Function]) -> str:
    lines = [
        '"""Generated by payload_functions.packaging: registers exactly the blueprints of this app."""',
        "",
        "import azure.functions as func",
        "",
    ]
    aliases = []
    for fn in functions:
        alias = f"{str(fn).replace('-', '_')}_bp"
        aliases.append(alias)
        lines.append(f"from {module_name('azure', fn)} import bp as {alias}")
    lines += ["", "app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)"]
    lines += [f"app.register_functions({alias})" for alias in aliases]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class UserCodeFolder:
    """One folder of users' code to ship: its reference and its files (paths relative to the folder)."""

    ref: UserCodeRef
    files: Mapping[str, bytes] = field(repr=False)


def user_package_name(ref: UserCodeRef) -> str:
    """The folder's package inside `user_code/`: named by content, so the same code shipped for
    several devices is there once, and the name is an identifier whatever the device id."""
    return f"c{ref.digest[:16]}"


def _user_sources(folder: UserCodeFolder, what: str) -> dict[str, bytes]:
    """The folder's files under its package, checked: they are what the plan referenced, they
    parse, the entry exists. (The bundle was checked when it was accepted; this guards the
    package against a store that changed under it.)"""
    ref = folder.ref
    digest = folder_digest({f"{ref.path}/{name}": data for name, data in folder.files.items()}, ref.path)
    if digest != ref.digest:
        raise PackagingError(f"{what}: the code of {ref.kind} {ref.name} at {ref.path} is not the code the plan "
                             f"referenced (digest {digest[:12]}..., expected {ref.digest[:12]}...)")
    base = f"{USER_CODE_PACKAGE}/{user_package_name(ref)}"
    out: dict[str, bytes] = {}
    for name, data in folder.files.items():
        if name.endswith(".py"):
            try:
                parse_python(data, filename=f"{ref.path}/{name}")
            except (SyntaxError, ValueError) as exc:
                raise PackagingError(f"{what}: {ref.path}/{name}: {exc}") from None
        out[f"{base}/{name}"] = data
    if f"{ref.module}.py" not in folder.files:
        raise PackagingError(f"{what}: {ref.path} has no {ref.module}.py")
    # A package of its own, so its modules import each other relatively (`from . import x`).
    out.setdefault(f"{base}/__init__.py", b"")
    return out


def user_code_index_source(refs: Iterable[UserCodeRef]) -> str:
    """`user_code/__init__.py`: (package, module, function) of each processor and event action."""
    tables: dict[str, dict[str, tuple[str, str, str]]] = {"processor": {}, "event-action": {}}
    for ref in refs:
        tables[ref.kind][ref.name] = (f"{USER_CODE_PACKAGE}.{user_package_name(ref)}", ref.module, ref.function)

    def render(table: dict[str, tuple[str, str, str]]) -> str:
        rows = "".join(f"    {json.dumps(k)}: {json.dumps(list(v))},\n" for k, v in sorted(table.items()))
        return "{\n" + rows + "}" if rows else "{}"

    return (
        '"""Generated by payload_functions.packaging: the users\' code this package carries."""\n\n'
        f"PROCESSORS = {render(tables['processor'])}\n"
        f"ACTIONS = {render(tables['event-action'])}\n"
    )


def user_code_files(folders: Iterable[UserCodeFolder], what: str) -> tuple[dict[str, bytes], set[str]]:
    """The files that ship users' code in a package (`user_code/...`), and the third-party
    imports of that code (dotted names), for the package's requirements."""
    chosen = list(folders)
    files: dict[str, bytes] = {}
    third: set[str] = set()
    for folder in chosen:
        sources = _user_sources(folder, what)
        files.update(sources)
        for name, data in sources.items():
            if not name.endswith(".py"):
                continue
            package = name.rsplit("/", 1)[0].replace("/", ".")
            for imported in _imports(parse_python(data, filename=name), package):
                top = imported.split(".")[0]
                if imported and top not in sys.stdlib_module_names and top not in ("__future__", USER_CODE_PACKAGE):
                    third.add(imported)
    if chosen:
        files[f"{USER_CODE_PACKAGE}/__init__.py"] = user_code_index_source(f.ref for f in chosen).encode("utf-8")
    return files, third


def _check_user_code(folders: list[UserCodeFolder], functions: Iterable[Function], what: str) -> None:
    """Users' code rides only with the functions that run it, and those never go without it."""
    hosted = set(functions)
    kinds = {f.ref.kind for f in folders}
    for fn, kind in ((Function.USER_PROCESSOR, "processor"), (Function.EVENT_ACTION, "event-action")):
        if fn in hosted and kind not in kinds:
            raise PackagingError(f"{what}: {fn} runs users' code, and none ({kind}) was given")
    for folder in folders:
        ref = folder.ref
        runs = {Function.PROCESSOR, Function.USER_PROCESSOR} if ref.kind == "processor" else {Function.EVENT_ACTION}
        if not hosted & runs:
            raise PackagingError(f"{what}: the code of {ref.kind} {ref.name} needs one of "
                                 f"{', '.join(sorted(map(str, runs)))} in the package")


def build_azure_app_package(
    app_name: str, functions: Iterable[Function | str], *, user_code: Iterable[UserCodeFolder] = ()
) -> Package:
    """One zip for a whole Function App hosting `functions` (names from `shared.contracts.Function`),
    with the users' code its user-code functions run."""
    chosen = sorted({_function(f, "azure") for f in functions}, key=str)
    if not chosen:
        raise PackagingError(f"Function App {app_name}: no functions to package")
    folders = list(user_code)
    what = f"Function App {app_name}"
    _check_user_code(folders, chosen, what)
    user, user_imports = user_code_files(folders, what)
    closure = import_closure([module_name("azure", f) for f in chosen])
    # The users' imports must be installable too (the remote build installs requirements.txt).
    third = closure.third_party | {"azure.functions"} | user_imports
    requirements = requirements_for(third, what)
    files: dict[str, bytes] = {path: src.read_bytes() for path, src in closure.files.items()}
    files["function_app.py"] = function_app_source(chosen).encode("utf-8")
    files["host.json"] = host_json()
    files["requirements.txt"] = ("\n".join(requirements) + "\n").encode("utf-8")
    files.update(user)
    return _package(app_name, files, [str(f) for f in chosen], requirements)


def lambda_entry_source(function: Function) -> str:
    return (
        f'"""Generated by payload_functions.packaging: the Lambda entry point ({LAMBDA_HANDLER})."""\n\n'
        f"from {module_name('aws', function)} import handler\n\n"
        '__all__ = ["handler"]\n'
    )


def build_lambda_package(function: Function | str, *, user_code: Iterable[UserCodeFolder] = ()) -> Package:
    """One zip for one Lambda; handler `lambda_function.handler`. `user_code`: the device's own
    processor (package `processor`) or the action's code (package `event-action`)."""
    fn = _function(function, "aws")
    folders = list(user_code)
    what = f"Lambda {fn}"
    _check_user_code(folders, [fn], what)
    if fn == Function.EVENT_ACTION and len(folders) != 1:
        raise PackagingError(f"{what}: an event action Lambda runs exactly one action's code, got {len(folders)}")
    if fn == Function.PROCESSOR and len(folders) > 1:
        raise PackagingError(f"{what}: a processor Lambda runs one device's code, got {len(folders)}")
    user, user_imports = user_code_files(folders, what)
    closure = import_closure([module_name("aws", fn)])
    requirements = requirements_for(closure.third_party | user_imports, what)
    extra = [r for r in requirements if r not in LAMBDA_RUNTIME_PROVIDES]
    if extra:
        raise PackagingError(f"{what} imports packages the Lambda runtime lacks: {', '.join(extra)}")
    files: dict[str, bytes] = {path: src.read_bytes() for path, src in closure.files.items()}
    files[f"{LAMBDA_ENTRY_MODULE}.py"] = lambda_entry_source(fn).encode("utf-8")
    files.update(user)
    return _package(str(fn), files, [str(fn)], requirements, LAMBDA_HANDLER)


def entry_point(function: Function | str) -> str:
    """A Cloud Function's entry point (functions-framework target): the function name as a
    Python identifier. Unique per function, so functions-framework's registry of signature types,
    keyed by name, never confuses two of them."""
    return str(Function(function)).replace("-", "_")


def cloud_function_main_source(function: Function) -> str:
    target = entry_point(function)
    return (
        f'"""Generated by payload_functions.packaging: the Cloud Function entry point ({target})."""\n\n'
        f"from {module_name('gcp', function)} import {target}\n\n"
        f'__all__ = ["{target}"]\n'
    )


def build_cloud_function_package(function: Function | str, *, user_code: Iterable[UserCodeFolder] = ()) -> Package:
    """One zip for one Cloud Function (gen2): `main.py` with the entry point `entry_point(function)`,
    `requirements.txt`, the import closure, and the users' code it runs (a device's processor: that
    device's folder; an event action: its one folder)."""
    fn = _function(function, "gcp")
    folders = list(user_code)
    what = f"Cloud Function {fn}"
    _check_user_code(folders, [fn], what)
    if fn == Function.EVENT_ACTION and len(folders) != 1:
        raise PackagingError(f"{what}: an event action function runs exactly one action's code, got {len(folders)}")
    if fn == Function.PROCESSOR and len(folders) > 1:
        raise PackagingError(f"{what}: a processor function runs one device's code, got {len(folders)}")
    user, user_imports = user_code_files(folders, what)
    closure = import_closure([module_name("gcp", fn)])
    requirements = tuple(sorted({*requirements_for(closure.third_party | user_imports, what), CLOUD_FUNCTION_RUNTIME}))
    files: dict[str, bytes] = {path: src.read_bytes() for path, src in closure.files.items()}
    files[CLOUD_FUNCTION_MAIN] = cloud_function_main_source(fn).encode("utf-8")
    files["requirements.txt"] = ("\n".join(requirements) + "\n").encode("utf-8")
    files.update(user)
    return _package(str(fn), files, [str(fn)], requirements, entry_point(fn))


def build_for_resource(kind: str, name: str, config: FunctionAppConfig | LambdaConfig | CloudFunctionConfig,
                       user_code: Iterable[UserCodeFolder] = ()) -> Package:
    """The package of a planned resource (`function-app`, `lambda` or `cloud-function`), from its
    typed configuration and the users' code it references (`config.user_code`, read by the provider)."""
    folders = list(user_code)
    wanted = {(r.kind, r.name, r.digest) for r in config.user_code}
    given = {(f.ref.kind, f.ref.name, f.ref.digest) for f in folders}
    if wanted != given:
        raise PackagingError(f"{kind} {name}: the users' code given is not the code its configuration references")
    if kind == "function-app" and isinstance(config, FunctionAppConfig):
        packages = [str(f.package) for f in config.functions]
        unsupported = sorted({p for p in packages if p not in {str(f) for f in supported_functions("azure")}})
        if unsupported:
            raise PackagingError(f"Function App {name}: no package for {', '.join(unsupported)}")
        return build_azure_app_package(name, packages, user_code=folders)
    if kind == "lambda" and isinstance(config, LambdaConfig):
        return build_lambda_package(str(config.package), user_code=folders)
    if kind == "cloud-function" and isinstance(config, CloudFunctionConfig):
        return build_cloud_function_package(str(config.package), user_code=folders)
    raise PackagingError(f"resource kind {kind!r} has no payload package (expected function-app, lambda or cloud-function)")
