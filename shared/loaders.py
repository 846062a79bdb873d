"""Loading a deployment spec: from a dict (the HTTP body), a JSON file, or the original project's
folder layout. Every loader raises `SpecError` listing every problem at once, and nothing else.

Structural errors from pydantic are rewritten into plain sentences with readable JSON paths;
semantic checks come from `shared.validation.validate_spec`.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.spec import TwinSpec
from shared.validation import Problem, SpecError, quote_value, validate_spec

__all__ = [
    "LEGACY_FILES",
    "MAX_DOCUMENT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NUMBER_CHARS",
    "DocumentError",
    "json_path",
    "legacy_dict",
    "legacy_spec",
    "load_spec",
    "parse_json_document",
    "spec_from_dict",
    "spec_problems",
]

# ---------------------------------------------------------------------------------------------
# Paths and messages
# ---------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_$@][A-Za-z0-9_$@-]*")


_PATH_KEY_CHARS = 60


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("devices", 2, "id")` -> `devices[2].id`; odd keys are quoted: `models[0]["my key"]`; a key
    longer than 60 characters is shown by its prefix (`["xxxx..."]`)."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            key = str(part)
            if len(key) > _PATH_KEY_CHARS:
                out += f"[{json.dumps(key[:_PATH_KEY_CHARS] + '...')}]"
                continue
            if _PLAIN_KEY.fullmatch(key):
                out += f".{key}" if out else key
            else:
                out += f"[{json.dumps(key)}]"
    return out


# Keys that name a credential. Secrets never come in a spec: credentials come from the environment.
_SECRET_KEY = re.compile(
    r"secret|password|passwd|token|connection_?string|access_?key|api_?key|private_?key|credential|sas_?key|sas_?token",
    re.IGNORECASE,
)
_CREDENTIALS_HINT = (
    "credentials never go in a spec: remove it. The control plane takes credentials from its environment "
    "(managed identity / DefaultAzureCredential on Azure, the AWS credential chain or clouds.aws.role_arn on AWS)"
)


def _secret_paths(clouds: Any) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [(("clouds",), clouds)]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and _SECRET_KEY.search(key):
                    found.append((*loc, key))
                else:
                    stack.append(((*loc, key), value))
        elif isinstance(node, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(node))
    return sorted(found, key=lambda loc: json_path(loc))


def _unwrap(annotation: Any) -> Any:
    """Reach the model class inside Optional[...], list[...], Annotated[...]."""
    seen = 0
    while seen < 10:
        seen += 1
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation
    return annotation


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the object at `loc` (None if it is not a model)."""
    current: Any = TwinSpec
    for part in loc:
        if isinstance(part, int):
            continue  # list items: the annotation was unwrapped to the item type already
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None:
            return None
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _short(value: Any) -> str | None:
    """A short, safe rendering of a rejected value for a message, or None."""
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value) if not isinstance(value, float) or value == value else "NaN"
    return None


_TYPE_NAMES = {
    list: "a list",
    dict: "a JSON object",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _kind(value: Any) -> str:
    for t, name in _TYPE_NAMES.items():
        if type(value) is t:
            return name
    return "a " + type(value).__name__


def _message(error: Mapping[str, Any], under_clouds: bool) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"])
    value = error.get("input")
    shown = None if under_clouds else _short(value)
    got = f", not {shown}" if shown is not None else ""
    if kind == "missing":
        what = "section" if len(loc) == 1 else "field"
        return f"required {what} {quote_value(str(loc[-1]))} is missing" if loc else "required value is missing"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        model = _model_at(loc[:-1])
        hint = ""
        if model is not None:
            names = _field_names(model)
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6) if len(key) <= 100 else []
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(names)}"
        return f"unknown field {quote_value(key)}{hint}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        expected = expected.replace(" or ", ", ")
        if loc and str(loc[-1]).endswith("_provider"):
            return f"must be one of aws, azure, gcp (google is accepted for gcp){got}"
        return f"must be one of {expected}{got}"
    if kind.startswith("int_"):
        return f"must be a whole number{got}"
    if kind.startswith("float_"):
        return f"must be a number{got}"
    if kind.startswith("bool_"):
        return f"must be true or false{got}"
    if kind.startswith("string_"):
        if kind == "string_too_short":
            return "must not be empty"
        if kind == "string_pattern_mismatch":
            return f"must match {ctx.get('pattern')}{got}"
        return f"must be a string, not {_kind(value)}"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return f"must be a list, not {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"must be a JSON object, not {_kind(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} entries"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}{got}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}{got}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}{got}"
    if kind in ("recursion_loop", "recursion_depth_exceeded"):
        return "nests too deeply (the tree is deeper than the loader accepts)"
    # Anything else: pydantic's own sentence, which is plain enough for the rare cases left.
    msg = str(error.get("msg", "is invalid"))
    return msg[:1].lower() + msg[1:]


def _structural_problems(exc: ValidationError, skip: set[tuple[Any, ...]]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if loc in skip:
            continue
        under_clouds = bool(loc) and loc[0] == "clouds"
        problem = Problem(json_path(loc), _message(error, under_clouds))
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems


def spec_problems(data: object) -> tuple[TwinSpec | None, list[Problem]]:
    """Validate `data` (structure, then semantics). Returns the spec when there is no problem."""
    if not isinstance(data, Mapping):
        return None, [Problem("", f"the spec must be a JSON object with twin, providers and devices, not {_kind(data)}")]
    problems: list[Problem] = []
    secrets = _secret_paths(data.get("clouds")) if isinstance(data.get("clouds"), Mapping) else []
    problems += [Problem(json_path(loc), f"{quote_value(str(loc[-1]))} looks like a credential; {_CREDENTIALS_HINT}") for loc in secrets]
    non_str_keys = [k for k in data if not isinstance(k, str)]
    if non_str_keys:
        problems.append(Problem("", f"keys must be strings; found {_kind(non_str_keys[0])[2:]} key(s)"))
        return None, problems
    try:
        spec = TwinSpec.model_validate(dict(data))
    except ValidationError as exc:
        problems += _structural_problems(exc, set(secrets))
        return None, problems or [Problem("", "the spec is invalid")]
    except RecursionError:
        return None, [*problems, Problem("", "the document nests too deeply")]
    if problems:
        return None, problems
    problems = validate_spec(spec)
    return (None, problems) if problems else (spec, [])


def spec_from_dict(data: object) -> TwinSpec:
    """The spec in `data` (e.g. an HTTP body). Raises `SpecError` with every problem."""
    spec, problems = spec_problems(data)
    if spec is None:
        raise SpecError(problems)
    return spec


# ---------------------------------------------------------------------------------------------
# One strict JSON reading, for HTTP bodies and files alike
# ---------------------------------------------------------------------------------------------

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""A spec (HTTP body or file) is at most 4 MiB: 10,000 devices take about 2.5 MB."""
MAX_JSON_DEPTH = 100
"""Arrays and objects nest at most 100 deep (a TwinMaker tree of about 45 levels)."""
MAX_NUMBER_CHARS = 40
"""A number literal has at most 40 characters: no 5,000-digit integers, no `1e999`."""

_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class DocumentError(SpecError):
    """A document that is not one strict JSON value; `too_large` when it exceeds the byte limit."""

    def __init__(self, problems: list[Problem], too_large: bool = False) -> None:
        super().__init__(problems)
        self.too_large = too_large


class _Refused(ValueError):
    """Raised from the decoder's hooks; the message is the problem's text."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON (numbers must be finite)")


def _checked_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has {len(text)} digits; at most {MAX_NUMBER_CHARS} characters are accepted")
    return int(text)


def _checked_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text} is too large for a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {quote_value(key)} in one object (each key may appear once)")
            seen.add(key)
    return obj


_TOO_DEEP = f"it nests too deeply (more than {MAX_JSON_DEPTH} levels of arrays and objects)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _shape_problem(value: Any) -> str | None:
    """Depth beyond the limit, or a string that is not Unicode text (a lone surrogate escape)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                return _TOO_DEEP
            for key, child in node.items():
                if _SURROGATE.search(key):
                    return "a key holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                return _TOO_DEEP
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            return "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
    return None


def parse_json_document(raw: bytes, what: str = "the document", path: str = "") -> Any:
    """`raw` as one strict JSON value (RFC 8259): UTF-8 (a leading byte order mark is ignored), at
    most `MAX_DOCUMENT_BYTES`, nesting at most `MAX_JSON_DEPTH`, numbers finite and at most
    `MAX_NUMBER_CHARS` long, no NaN/Infinity, no duplicate keys. Raises `DocumentError` (problems
    at `path`, naming `what`); messages never quote more than a short prefix of the input."""

    def fail(message: str, too_large: bool = False) -> DocumentError:
        return DocumentError([Problem(path, f"{what} {message}")], too_large)

    if len(raw) > MAX_DOCUMENT_BYTES:
        raise fail(f"is {len(raw):,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes", too_large=True)
    if raw.startswith(_UTF16_32_BOMS):
        raise fail("is not UTF-8 text (it starts with a UTF-16 or UTF-32 byte order mark); send UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise fail("is not valid JSON: it is empty")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_checked_int,
                           parse_float=_checked_float, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise fail(f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except _Refused as exc:
        raise fail(f"is not accepted: {exc}") from None
    except RecursionError:
        # The decoder recurses per level; far beyond MAX_JSON_DEPTH it stops on its own.
        raise fail(f"is not accepted: {_TOO_DEEP}") from None
    problem = _shape_problem(value)
    if problem is not None:
        raise fail(f"is not accepted: {problem}")
    return value


def _read_json(path: Path, label: str) -> tuple[Any, list[Problem]]:
    """Read and parse a JSON file strictly. `label` is the path prefix for problems ("" for a
    single spec file)."""
    shown = label or path.name
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            return None, [Problem(label, f"{shown} is {size:,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes")]
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(label, f"file {shown} does not exist")]
    except OSError as exc:
        return None, [Problem(label, f"cannot read {shown}: {exc.strerror or exc.__class__.__name__}")]
    try:
        return parse_json_document(raw, what=shown, path=label), []
    except DocumentError as exc:
        return None, exc.problems


# The original layout. config_credentials.json is never read (secrets never come in a spec) and
# config_inter_cloud.json is ignored (the control plane computes and wires those values itself).
LEGACY_FILES = {
    "config": "config.json",
    "providers": "config_providers.json",
    "devices": "config_iot_devices.json",
    "events": "config_events.json",
    "optimization": "config_optimization.json",
    "azure_hierarchy": "twin_hierarchy/azure_hierarchy.json",
    "aws_hierarchy": "twin_hierarchy/aws_hierarchy.json",
}
_CONFIG_KEYS = {
    "digital_twin_name": "name",
    "hot_storage_size_in_days": "hot_storage_days",
    "cold_storage_size_in_days": "cold_storage_days",
    "mode": "mode",
}
_OPTIMIZATION_FLAGS = {
    "useEventChecking": "use_event_checking",
    "triggerNotificationWorkflow": "trigger_notification_workflow",
    "returnFeedbackToDevice": "return_feedback_to_device",
    "integrateErrorHandling": "integrate_error_handling",
}
_OPTIMIZATION_PREFIX = "result.inputParamsUsed"


def _legacy_path(path: str) -> str:
    """Map a spec path to the file (and key) of the original layout it came from."""

    def split(prefix: str) -> str | None:
        if path == prefix:
            return ""
        if path.startswith(prefix + ".") or path.startswith(prefix + "["):
            rest = path[len(prefix) :]
            return rest[1:] if rest.startswith(".") else rest
        return None

    rest = split("twin")
    if rest is not None:
        reverse = {v: k for k, v in _CONFIG_KEYS.items()}
        return f"{LEGACY_FILES['config']}:{reverse.get(rest, rest)}" if rest else LEGACY_FILES["config"]
    simple = (
        ("providers", "providers"),
        ("devices", "devices"),
        ("events", "events"),
        ("hierarchy.azure", "azure_hierarchy"),
        ("hierarchy.aws", "aws_hierarchy"),
    )
    for prefix, key in simple:
        rest = split(prefix)
        if rest is not None:
            return f"{LEGACY_FILES[key]}:{rest}" if rest else LEGACY_FILES[key]
    rest = split("options")
    if rest is not None:
        reverse = {v: k for k, v in _OPTIMIZATION_FLAGS.items()}
        file = LEGACY_FILES["optimization"]
        return f"{file}:{_OPTIMIZATION_PREFIX}.{reverse.get(rest, rest)}" if rest else file
    return path


def legacy_dict(read: Callable[[str], tuple[Any, list[Problem]] | None]) -> tuple[dict[str, Any], list[Problem]]:
    """The spec dict of an original-layout project whose files `read(name)` gives: (parsed JSON,
    problems) of the file called `name` (e.g. `config.json`), or None when there is no such file.
    A folder and a deployment bundle read their files differently; the mapping is the same."""
    problems: list[Problem] = []
    data: dict[str, Any] = {}

    def get(key: str, required: bool) -> Any:
        name = LEGACY_FILES[key]
        found = read(name)
        if found is None:
            if required:
                problems.append(
                    Problem(name, f"{name} is missing; an original-layout folder needs config.json, "
                            "config_providers.json and config_iot_devices.json")
                )
            return None
        value, read_problems = found
        problems.extend(read_problems)
        return value

    config = get("config", True)
    if config is not None:
        if isinstance(config, dict):
            data["twin"] = {_CONFIG_KEYS.get(k, k): v for k, v in config.items()}
        else:
            problems.append(Problem(LEGACY_FILES["config"], f"must be a JSON object, not {_kind(config)}"))
    for key, section, required in (("providers", "providers", True), ("devices", "devices", True), ("events", "events", False)):
        value = get(key, required)
        if value is not None:
            data[section] = value
    hierarchy: dict[str, Any] = {}
    for key, section in (("azure_hierarchy", "azure"), ("aws_hierarchy", "aws")):
        value = get(key, False)
        if value is not None:
            hierarchy[section] = value
    if hierarchy:
        data["hierarchy"] = hierarchy
    optimization = get("optimization", False)
    if optimization is not None:
        flags = optimization.get("result", {}) if isinstance(optimization, dict) else None
        flags = flags.get("inputParamsUsed") if isinstance(flags, dict) else None
        if not isinstance(flags, dict):
            problems.append(
                Problem(LEGACY_FILES["optimization"], f"expected the flags as an object under {_OPTIMIZATION_PREFIX}")
            )
        else:
            # Only the flags we act on; the optimizer writes others (needs3DModel, ...) we ignore.
            data["options"] = {snake: flags[camel] for camel, snake in _OPTIMIZATION_FLAGS.items() if camel in flags}
    return data, problems


def legacy_spec(read: Callable[[str], tuple[Any, list[Problem]] | None]) -> TwinSpec:
    """The spec of an original-layout project (see `legacy_dict`); problems name the file they
    come from (`config_providers.json:layer_1_provider`). Raises `SpecError`."""
    data, read_problems = legacy_dict(read)
    spec, problems = spec_problems(data)
    if spec is not None and not read_problems:
        return spec
    # A file that could not be read shows up as a missing section too: say it once.
    broken = {p.path.split(":", 1)[0] for p in read_problems}
    relabelled = [p for p in _relabel(problems) if p.path.split(":", 1)[0] not in broken]
    raise SpecError([*read_problems, *relabelled])


def load_spec(path: str | Path) -> TwinSpec:
    """Load a spec from a JSON file, or from a folder in the original layout (a folder holding a
    `twin.json` loads that file). Raises `SpecError` with every problem."""
    try:
        target = Path(path)
        is_dir = target.is_dir()
        is_file = target.is_file()
    except (OSError, ValueError) as exc:
        raise SpecError([Problem("", f"cannot use {str(path)!r} as a spec path: {exc}")]) from None
    if is_dir and (target / "twin.json").is_file():
        target, is_dir, is_file = target / "twin.json", False, True
    if is_file:
        data, problems = _read_json(target, "")
        if problems:
            raise SpecError(problems)
        return spec_from_dict(data)
    if is_dir:

        def read(name: str) -> tuple[Any, list[Problem]] | None:
            file = target / name
            return _read_json(file, name) if file.exists() else None

        return legacy_spec(read)
    raise SpecError([Problem("", f"no spec at {str(path)!r}: expected a JSON file or an original-layout folder")])


def _relabel(problems: list[Problem]) -> Iterator[Problem]:
    for p in problems:
        # Problems from reading files already name their file.
        if p.path.split(":", 1)[0] in LEGACY_FILES.values():
            yield p
        else:
            yield Problem(_legacy_path(p.path), p.message)
