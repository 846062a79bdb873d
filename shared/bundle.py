"""Deployment bundles: a spec with the users' own code beside it (DESIGN.md principle 10).

A bundle is a zip (the body of `POST /api/deployments` as `application/zip`, or what
`deploy FOLDER` sends) holding either a `twin.json` or the original project's layout
(`config.json`, `config_providers.json`, ...) at its root, and the code folders beside it, as
the original project had them:

- processors: `{code dir}/processors/{device id}/process.py` defining `process(event) -> event`,
  where the code dir is the L2 cloud's (`lambda_functions` on AWS, `azure_functions` on Azure,
  `cloud_functions` on GCP); `{code dir}/processors/default_processor/` serves devices without
  their own folder;
- event actions (`autoDeploy`): the folder `pathToCode` (default
  `{code dir}/event_actions/{functionName}`) holding `action.py` defining `action(event)`, or, as
  the original's Lambdas did, `lambda_function.py` defining `lambda_handler(event, context)`.

Everything here is checked without running anything: entries (no absolute paths, no `..`, no
links, bounded count and size, a zip bomb stops at the size limit), Python syntax (`ast`, with
file and line), the entry each used folder must define, and what its modules import (the folder
itself relatively, the standard library, and what the target cloud's runtime provides). The
control plane never imports user code: it is packaged into the functions that run it.

A bundle is stored content-addressed: `sha256` is the digest of its canonical zip (entries
sorted, fixed timestamps), so the same files give the same name whatever zip tool made them.
"""

from __future__ import annotations

import ast
import hashlib
import io
import stat
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from shared.loaders import DocumentError, legacy_spec, parse_json_document, spec_from_dict
from shared.pysource import parse_python
from shared.resources.base import UserCodeRef
from shared.spec import TwinSpec
from shared.validation import Problem, SpecError, quote_value

# --- limits (README "Bundles") ------------------------------------------------------------------

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
"""A bundle (the zip as sent) is at most 16 MiB."""
MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
"""Its files together are at most 64 MiB once uncompressed (reading stops there: no zip bomb)."""
MAX_ENTRIES = 2000
"""At most 2,000 entries (files and folders)."""
MAX_PATH_CHARS = 255
MAX_PATH_DEPTH = 16

BUNDLE_TYPE = "application/zip"
SPEC_FILE = "twin.json"
LEGACY_MARKER = "config.json"
CODE_DIRS: dict[str, str] = {"aws": "lambda_functions", "azure": "azure_functions", "gcp": "cloud_functions"}
"""Where each cloud's user code lives in a bundle (the original project's folder names)."""
DEFAULT_PROCESSOR = "default_processor"
PROCESSOR_ENTRY = ("process", "process")
ACTION_ENTRIES = (("action", "action"), ("lambda_function", "lambda_handler"))
"""An event action's entry: `action.py` `action(event)`, else `lambda_function.py`
`lambda_handler(event, context)` (the original project's Lambda form)."""

PROVIDED_IMPORTS: dict[str, tuple[str, ...]] = {
    # The Lambda runtime has boto3; nothing is installed from a requirements file.
    "aws": ("boto3", "botocore"),
    # A Function App's requirements.txt is installed by the remote build (packaging.REQUIREMENTS).
    "azure": ("azure.functions", "azure.core", "azure.identity", "azure.digitaltwins", "azure.cosmos",
              "azure.storage.blob", "boto3", "botocore"),
    # Cloud Build installs requirements.txt (the GCP packaging's table).
    "gcp": ("functions_framework", "google.api_core", "google.auth", "google.oauth2", "google.cloud.firestore",
            "google.cloud.storage", "google.cloud.pubsub", "google.cloud.pubsub_v1"),
}
"""What user code may import on each cloud beside the standard library and its own folder."""

_SKIPPED_PARTS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", "node_modules", ".DS_Store"})
"""Folder parts `deploy FOLDER` leaves out (caches and tool state, never code)."""
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
_PATH_SHOWN = 60


class BundleError(SpecError):
    """A bundle that cannot be accepted; `too_large` when a size or count limit was exceeded (413)."""

    def __init__(self, problems: Iterable[Problem], too_large: bool = False) -> None:
        super().__init__(problems)
        self.too_large = too_large


def shown_path(name: str) -> str:
    """An entry name as a problem path: printable, at most 60 characters (then `...`)."""
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= _PATH_SHOWN else text[:_PATH_SHOWN] + "..."


def quote_path(name: str) -> str:
    return f"'{shown_path(name)}'"


# --- reading a zip ------------------------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a bundle entry, or None."""
    if not name:
        return "an entry has an empty name"
    if any(not ch.isprintable() for ch in name):
        return "the entry's name holds control characters"
    if "\\" in name:
        return "the entry's name holds a backslash; zip paths use /"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "the entry has an absolute path; bundle paths are relative to its root"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "the entry's path climbs out of the bundle (..)"
    if any(part in ("", ".") for part in parts):
        return "the entry's path has an empty or '.' part"
    if len(name) > MAX_PATH_CHARS:
        return f"the entry's path has {len(name)} characters; at most {MAX_PATH_CHARS} are accepted"
    if len(parts) > MAX_PATH_DEPTH:
        return f"the entry's path is {len(parts)} folders deep; at most {MAX_PATH_DEPTH} are accepted"
    return None


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    """Links, devices and other non-files are refused; so are encrypted entries."""
    if info.flag_bits & 0x1:
        return "the entry is encrypted"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # unix: the high bits carry st_mode
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "the entry is a symbolic link; links are not accepted"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "the entry is not a regular file or folder"
    return None


def read_zip(data: bytes) -> dict[str, bytes]:
    """The files of a bundle zip (folders dropped), every entry checked. Raises `BundleError`
    listing every problem (413-style `too_large` for limits)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError([Problem("", f"the bundle is {len(data):,} bytes; the limit is {MAX_BUNDLE_BYTES:,} bytes")],
                          too_large=True)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError([Problem("", f"the bundle is not a readable zip archive: {str(exc)[:80]}")]) from None
    if len(infos) > MAX_ENTRIES:
        raise BundleError([Problem("", f"the bundle has {len(infos):,} entries; at most {MAX_ENTRIES:,} are accepted")],
                          too_large=True)
    declared = sum(max(info.file_size, 0) for info in infos)
    if declared > MAX_UNCOMPRESSED_BYTES:
        raise BundleError([Problem("", f"the bundle's files add up to {declared:,} bytes uncompressed; "
                                       f"the limit is {MAX_UNCOMPRESSED_BYTES:,} bytes")], too_large=True)
    problems: list[Problem] = []
    seen: set[str] = set()
    wanted: list[zipfile.ZipInfo] = []
    for info in infos:
        name = info.filename
        problem = _name_problem(name) or _kind_problem(info)
        key = name.rstrip("/")
        if problem is None and key in seen:
            problem = "the bundle holds this path twice"
        seen.add(key)
        if problem is not None:
            problems.append(Problem(shown_path(name), problem))
        elif not info.is_dir():
            wanted.append(info)
    if problems:
        raise BundleError(problems)
    files: dict[str, bytes] = {}
    budget = MAX_UNCOMPRESSED_BYTES
    with archive:
        for info in wanted:
            # Read in chunks and stop at the budget: a header's sizes are the sender's word.
            chunks: list[bytes] = []
            try:
                with archive.open(info) as entry:
                    while True:
                        chunk = entry.read(1 << 20)
                        if not chunk:
                            break
                        budget -= len(chunk)
                        if budget < 0:
                            raise BundleError([Problem(shown_path(info.filename),
                                                       f"the bundle expands beyond {MAX_UNCOMPRESSED_BYTES:,} bytes "
                                                       "uncompressed")], too_large=True)
                        chunks.append(chunk)
            except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, OSError) as exc:
                raise BundleError([Problem(shown_path(info.filename), f"the entry cannot be read: {str(exc)[:80]}")]) from None
            files[info.filename] = b"".join(chunks)
    _check_file_folder_clashes(files)
    return files


def _check_file_folder_clashes(files: Mapping[str, bytes]) -> None:
    """`a/b` as a file and `a/b/c` beside it cannot both be unpacked."""
    folders = {str(PurePosixPath(name).parent) for name in files}
    for name in files:
        folders.update(str(p) for p in PurePosixPath(name).parents)
    clashes = sorted(name for name in files if name in folders)
    if clashes:
        raise BundleError([Problem(shown_path(name), "this path is both a file and a folder in the bundle")
                           for name in clashes])


def deterministic_zip(files: Mapping[str, bytes]) -> bytes:
    """A zip of `files` that depends on nothing but them: entries sorted, fixed timestamps
    (1980-01-01), fixed permissions (0644), fixed compression."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def zip_folder(folder: Path) -> bytes:
    """A folder (a `twin.json` or the original layout, with its code folders) as a bundle zip, for
    `deploy FOLDER`. Caches and tool state (`__pycache__`, `.git`, ...) and `*.pyc` are left out;
    a symbolic link is refused as the API would refuse it. Raises `BundleError`."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    total = 0
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        parts = rel.split("/")
        if any(part in _SKIPPED_PARTS for part in parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            problems.append(Problem(shown_path(rel), "a symbolic link; bundles hold files only (copy the target in)"))
            continue
        if path.is_dir():
            continue
        if not path.is_file():
            problems.append(Problem(shown_path(rel), "not a regular file"))
            continue
        if root not in path.resolve().parents:
            problems.append(Problem(shown_path(rel), "resolves outside the folder"))
            continue
        total += path.stat().st_size
        if total > MAX_UNCOMPRESSED_BYTES or len(files) >= MAX_ENTRIES:
            raise BundleError([Problem("", f"the folder holds more than the bundle limits allow ({MAX_ENTRIES:,} "
                                           f"files, {MAX_UNCOMPRESSED_BYTES:,} bytes)")], too_large=True)
        files[rel] = path.read_bytes()
    if problems:
        raise BundleError(problems)
    data = deterministic_zip(files)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError([Problem("", f"the folder zips to {len(data):,} bytes; the limit is {MAX_BUNDLE_BYTES:,}")],
                          too_large=True)
    return data


# --- Python sources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedName:
    module: str
    """The dotted name as written (`boto3`, `helpers.math`); empty for `from . import x`."""
    level: int
    """Leading dots of a relative import (0: absolute)."""
    line: int
    names: tuple[str, ...] = ()
    """`from module import a, b`: the names."""


@dataclass(frozen=True)
class PythonFacts:
    """What `ast` tells about one module, without running it."""

    defines: frozenset[str]
    """Top-level functions (`def`, not `async def`: entries are called synchronously) and names bound by imports."""
    imports: tuple[ImportedName, ...]


def python_facts(source: bytes, name: str) -> PythonFacts:
    """Parse `source` (raises SyntaxError like `ast.parse`)."""
    tree = parse_python(source, filename=name)
    defines: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef):
            defines.add(statement.name)
        elif isinstance(statement, ast.ImportFrom):
            defines.update(alias.asname or alias.name for alias in statement.names)
    imports: list[ImportedName] = []
    for node in ast.walk(tree):  # imports inside functions count too
        if isinstance(node, ast.Import):
            imports.extend(ImportedName(alias.name, 0, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append(ImportedName(node.module or "", node.level, node.lineno,
                                        tuple(alias.name for alias in node.names)))
    return PythonFacts(frozenset(defines), tuple(imports))


def _syntax_problem(name: str, exc: SyntaxError) -> Problem:
    where = f"line {exc.lineno}" if exc.lineno else "the file"
    if exc.lineno and exc.offset:
        where += f", column {exc.offset}"
    return Problem(shown_path(name), f"{where}: {exc.msg} (Python syntax error)")


def check_python(files: Mapping[str, bytes]) -> tuple[dict[str, PythonFacts], list[Problem]]:
    """Every `.py` file of the bundle parsed (UTF-8, syntax): its facts, and every problem with its
    file and line."""
    facts: dict[str, PythonFacts] = {}
    problems: list[Problem] = []
    for name in sorted(files):
        if not name.endswith(".py"):
            continue
        try:
            files[name].decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(shown_path(name), f"not UTF-8 text (bad byte at offset {exc.start})"))
            continue
        try:
            facts[name] = python_facts(files[name], name)
        except SyntaxError as exc:
            problems.append(_syntax_problem(name, exc))
        except (ValueError, RecursionError, MemoryError):
            problems.append(Problem(shown_path(name), "cannot be parsed as Python (it nests too deeply or holds NUL bytes)"))
    return facts, problems


# --- code folders -------------------------------------------------------------------------------


def folder_files(files: Iterable[str], folder: str) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    return sorted(name for name in files if name.startswith(prefix))


def folder_digest(files: Mapping[str, bytes], folder: str) -> str:
    """SHA-256 (hex) of a folder's files: each path relative to the folder and its content's digest."""
    prefix = folder.rstrip("/") + "/"
    digest = hashlib.sha256()
    for name in folder_files(files, folder):
        digest.update(name[len(prefix):].encode("utf-8") + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def normalise_folder(text: str) -> str | None:
    """A `pathToCode` as a bundle folder (`./a/b/` -> `a/b`), or None when it cannot be one."""
    value = text.strip().replace("\\", "/")
    while value.startswith("./"):
        value = value[2:]
    value = value.rstrip("/")
    if not value or _name_problem(value) is not None:
        return None
    return value


def _provided(cloud: str, module: str) -> bool:
    return any(module == p or module.startswith(p + ".") or p.startswith(module + ".")
               for p in PROVIDED_IMPORTS.get(cloud, ()))


@dataclass
class BundleCode:
    """The code side of a bundle, for the planner: each device's processor folder and each event
    action's folder on the cloud that runs them, checked and turned into `UserCodeRef`s."""

    sha256: str
    files: Mapping[str, bytes] = field(repr=False)
    facts: Mapping[str, PythonFacts] = field(repr=False)
    _folders: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # Folder -> the files under it (at any depth), so a plan with many devices looks each
        # folder up once instead of scanning every file per device.
        for name in sorted(self.files):
            for parent in PurePosixPath(name).parents:
                if str(parent) != ".":
                    self._folders.setdefault(str(parent), []).append(name)

    def folder_files(self, folder: str) -> list[str]:
        return self._folders.get(folder.rstrip("/"), [])

    def has_folder(self, folder: str) -> bool:
        return bool(self.folder_files(folder))

    def digest(self, folder: str) -> str:
        return folder_digest({name: self.files[name] for name in self.folder_files(folder)}, folder)

    def _check_folder(self, folder: str, cloud: str) -> list[Problem]:
        """What the folder's modules import: the folder itself (relatively), the standard library,
        what `cloud` provides."""
        problems: list[Problem] = []
        prefix = folder + "/"
        names = self.folder_files(folder)
        siblings = {PurePosixPath(n[len(prefix):]).parts[0].removesuffix(".py") for n in names}
        for name in names:
            facts = self.facts.get(name)
            if facts is None:
                continue
            depth = len(PurePosixPath(name[len(prefix):]).parts) - 1
            for imp in facts.imports:
                where = f"line {imp.line}"
                if imp.level:
                    if imp.level > depth + 1:
                        problems.append(Problem(shown_path(name), f"{where}: a relative import climbs out of the code "
                                                                  f"folder {quote_path(folder)}"))
                    continue
                top = imp.module.split(".")[0]
                if top in siblings:
                    problems.append(Problem(shown_path(name), f"{where}: import {quote_value(top)} relatively "
                                                              f"(from . import {top}): the folder is packaged as a "
                                                              "package, not put on the import path"))
                elif top in sys.stdlib_module_names or top == "__future__" or _provided(cloud, imp.module):
                    continue
                else:
                    provided = ", ".join(PROVIDED_IMPORTS.get(cloud, ())) or "nothing"
                    problems.append(Problem(shown_path(name), f"{where}: imports {quote_value(imp.module)}, which is "
                                                              f"neither in {quote_path(folder)} nor provided on {cloud} (beside "
                                                              f"the standard library: {provided}); copy it into the "
                                                              "folder"))
        return problems

    def _ref(self, kind: str, name: str, folder: str, entry: tuple[str, str]) -> UserCodeRef:
        return UserCodeRef(kind=kind, name=name, bundle=self.sha256, path=folder,  # type: ignore[arg-type]
                           digest=self.digest(folder), module=entry[0], function=entry[1])

    def _defines(self, folder: str, entry: tuple[str, str]) -> bool:
        facts = self.facts.get(f"{folder}/{entry[0]}.py")
        return facts is not None and entry[1] in facts.defines

    def processor(self, cloud: str, device_id: str) -> tuple[UserCodeRef | None, list[Problem]]:
        """The processor folder of `device_id` on `cloud` (its own, else the default one), or None
        when there is neither: the device gets our pass-through."""
        base = f"{CODE_DIRS[cloud]}/processors"
        for folder in (f"{base}/{device_id}", f"{base}/{DEFAULT_PROCESSOR}"):
            if not self.has_folder(folder):
                continue
            if not self._defines(folder, PROCESSOR_ENTRY):
                return None, [Problem(f"{folder}/process.py", "a processor folder needs process.py defining "
                                                              "process(event) (returning the event)")]
            problems = self._check_folder(folder, cloud)
            return (None, problems) if problems else (self._ref("processor", device_id, folder, PROCESSOR_ENTRY), [])
        return None, []

    def action(self, cloud: str, function_name: str, folder: str, spec_path: str) -> tuple[UserCodeRef | None, list[Problem]]:
        """The code of an `autoDeploy` event action at `folder` (`pathToCode` or its default)."""
        if not self.has_folder(folder):
            return None, [Problem(spec_path, f"the bundle has no code at {quote_path(folder)} for event action "
                                             f"{quote_value(function_name)}; add the folder (with action.py "
                                             "defining action(event)) or set autoDeploy to false")]
        for entry in ACTION_ENTRIES:
            if self._defines(folder, entry):
                problems = self._check_folder(folder, cloud)
                return (None, problems) if problems else (self._ref("event-action", function_name, folder, entry), [])
        return None, [Problem(f"{folder}/action.py", f"event action {quote_value(function_name)} needs action.py "
                                                     "defining action(event) (or lambda_function.py defining "
                                                     "lambda_handler(event, context))")]


def action_folder(cloud: str, function_name: str, path_to_code: str | None) -> str | None:
    """Where an event action's code is: `pathToCode`, else `{code dir}/event_actions/{functionName}`."""
    if path_to_code is not None:
        return normalise_folder(path_to_code)
    return f"{CODE_DIRS[cloud]}/event_actions/{function_name}"


# --- the bundle ---------------------------------------------------------------------------------


@dataclass
class Bundle:
    spec: TwinSpec
    data: bytes = field(repr=False)
    """The canonical zip (what is stored)."""
    sha256: str
    code: BundleCode

    @property
    def size(self) -> int:
        return len(self.data)


def _strip_wrapper(files: dict[str, bytes]) -> dict[str, bytes]:
    """A zip of a folder often holds the folder itself: with no spec at the root and every entry
    under one top folder, that folder is the root."""
    if SPEC_FILE in files or LEGACY_MARKER in files or not files:
        return files
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        top = next(iter(tops)) + "/"
        return {name[len(top):]: data for name, data in files.items()}
    return files


def _json_reader(files: Mapping[str, bytes]) -> Callable[[str], tuple[Any, list[Problem]] | None]:
    def read(name: str) -> tuple[Any, list[Problem]] | None:
        if name not in files:
            return None
        try:
            return parse_json_document(files[name], what=name, path=name), []
        except DocumentError as exc:
            return None, exc.problems

    return read


def spec_of(files: Mapping[str, bytes]) -> TwinSpec:
    """The spec a bundle's files hold: `twin.json`, else the original layout. Raises `SpecError`."""
    if SPEC_FILE in files:
        found = _json_reader(files)(SPEC_FILE)
        assert found is not None
        value, problems = found
        if problems:
            raise SpecError(problems)
        try:
            return spec_from_dict(value)
        except SpecError as exc:
            raise SpecError([Problem(f"{SPEC_FILE}:{p.path}" if p.path else SPEC_FILE, p.message)
                             for p in exc.problems]) from None
    if LEGACY_MARKER in files:
        return legacy_spec(_json_reader(files))
    raise SpecError([Problem("", f"the bundle holds neither {SPEC_FILE} nor the original layout's {LEGACY_MARKER} "
                                 "at its root")])


def bundle_from_files(files: Mapping[str, bytes]) -> Bundle:
    """Check a bundle's files (spec, Python) and make its canonical form. Raises `SpecError`."""
    tidy = _strip_wrapper(dict(files))
    facts, problems = check_python(tidy)
    spec: TwinSpec | None = None
    try:
        spec = spec_of(tidy)
    except SpecError as exc:
        problems = [*exc.problems, *problems]
    if problems or spec is None:
        raise BundleError(problems)
    data = deterministic_zip(tidy)
    digest = hashlib.sha256(data).hexdigest()
    return Bundle(spec=spec, data=data, sha256=digest, code=BundleCode(digest, tidy, facts))


def open_bundle(data: bytes) -> Bundle:
    """A bundle zip read, checked and made canonical. Raises `BundleError` / `SpecError` with
    every problem (the paths are the bundle's file paths)."""
    return bundle_from_files(read_zip(data))


def open_stored(data: bytes, sha256: str) -> dict[str, bytes]:
    """The files of a stored canonical bundle, after checking that they are what was stored
    (providers read code this way; the digest is the bundle's name)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"stored bundle {sha256[:12]}... has digest {actual[:12]}...: it was altered")
    return read_zip(data)


def load_bundle_folder(folder: Path) -> Bundle:
    """A folder as the bundle `deploy FOLDER` sends (`zip_folder`, then `open_bundle`)."""
    return open_bundle(zip_folder(folder))


