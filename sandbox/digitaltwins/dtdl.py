"""DTDL (v2/v3) parsing and value checking, as much of it as Azure Digital Twins enforces for us.

Azure Digital Twins parses every uploaded interface with the DTDL parser and refuses a batch
when an id is malformed, a reference (`extends`, a component's `schema`, a relationship's
`target`) points at a model that is neither stored nor in the same batch, or inherited
contents clash. Twins and relationships are then checked against the resolved interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

# DTDL's DTMI grammar: segments start with a letter (or underscores then a letter/digit), do not
# end with an underscore; the version is 1-999999999 with an optional minor part (DTDL v3).
_SEGMENT = r"(?:_+[A-Za-z0-9]|[A-Za-z])(?:[A-Za-z0-9_]*[A-Za-z0-9])?"
DTMI_RE = re.compile(rf"^dtmi:{_SEGMENT}(?::{_SEGMENT})*;[1-9][0-9]{{0,8}}(?:\.[1-9][0-9]{{0,5}})?$")
DTMI_UNVERSIONED_RE = re.compile(rf"^dtmi:{_SEGMENT}(?::{_SEGMENT})*(?:;[1-9][0-9]{{0,8}}(?:\.[1-9][0-9]{{0,5}})?)?$")
NAME_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]{0,510}[A-Za-z0-9])?$")

CONTEXTS = {"dtmi:dtdl:context;2", "dtmi:dtdl:context;3", "dtmi:dtdl:context;4"}
CONTENT_KINDS = ("Property", "Telemetry", "Relationship", "Component", "Command")
PRIMITIVES = {
    "boolean",
    "date",
    "dateTime",
    "double",
    "duration",
    "float",
    "integer",
    "long",
    "string",
    "time",
    "byte",
    "bytes",
    "decimal",
    "short",
    "uuid",
    "unsignedByte",
    "unsignedInteger",
    "unsignedLong",
    "unsignedShort",
}


class DtdlError(ValueError):
    """A model batch the DTDL parser refuses (ADT answers 400 `DTDLParserError`)."""


def is_dtmi(value: object) -> bool:
    return isinstance(value, str) and bool(DTMI_RE.match(value))


def _types(element: dict[str, Any]) -> list[str]:
    t = element.get("@type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return list(t)
    return []


def _kind(element: dict[str, Any]) -> str | None:
    for t in _types(element):
        if t in CONTENT_KINDS:
            return t
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass
class Content:
    """One resolved element of an interface's contents (own or inherited)."""

    name: str
    kind: str  # Property | Telemetry | Relationship | Component | Command
    element: dict[str, Any]
    defined_in: str  # model id that declares it


@dataclass
class ParsedModel:
    id: str
    definition: dict[str, Any]
    extends: list[str]
    own: dict[str, Content]
    # Model ids this interface refers to (extends, component schemas, relationship targets).
    references: set[str] = field(default_factory=set)
    # Named complex schemas declared in `schemas` (by @id), usable by reference in this interface.
    schemas: dict[str, Any] = field(default_factory=dict)


def parse_interface(definition: Any, index: int) -> ParsedModel:
    """Check one interface on its own; references are checked later against the whole batch."""
    where = f"model at index {index}"
    if not isinstance(definition, dict):
        raise DtdlError(f"Invalid model: {where} is not a JSON object.")
    model_id = definition.get("@id")
    if not isinstance(model_id, str):
        raise DtdlError(f"Invalid model: {where} has no '@id'.")
    where = f"model {model_id}"
    if not is_dtmi(model_id):
        raise DtdlError(
            f"Invalid model: '@id' value '{model_id}' of {where} is not a valid DTMI with a version "
            "(expected e.g. dtmi:com:example:Thermostat;1)."
        )
    if "Interface" not in _types(definition):
        raise DtdlError(f"Invalid model: {where} must have '@type' 'Interface'.")
    contexts = _as_list(definition.get("@context"))
    if not any(isinstance(c, str) and c in CONTEXTS for c in contexts):
        raise DtdlError(
            f"Invalid model: {where} has no supported '@context' (expected one of {', '.join(sorted(CONTEXTS))})."
        )
    extends: list[str] = []
    for ref in _as_list(definition.get("extends")):
        if not is_dtmi(ref):
            raise DtdlError(f"Invalid model: 'extends' of {where} must name interfaces by DTMI, got {ref!r}.")
        extends.append(ref)
    schemas: dict[str, Any] = {}
    for s in _as_list(definition.get("schemas")):
        if not isinstance(s, dict) or not is_dtmi(s.get("@id")):
            raise DtdlError(f"Invalid model: every entry of 'schemas' in {where} needs a DTMI '@id'.")
        schemas[s["@id"]] = s
    own: dict[str, Content] = {}
    references: set[str] = set(extends)
    contents = definition.get("contents", [])
    if not isinstance(contents, list):
        raise DtdlError(f"Invalid model: 'contents' of {where} must be an array.")
    for i, element in enumerate(contents):
        if not isinstance(element, dict):
            raise DtdlError(f"Invalid model: contents[{i}] of {where} is not a JSON object.")
        kind = _kind(element)
        if kind is None:
            raise DtdlError(
                f"Invalid model: contents[{i}] of {where} has '@type' {element.get('@type')!r}; "
                f"expected one of {', '.join(CONTENT_KINDS)}."
            )
        name = element.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise DtdlError(f"Invalid model: contents[{i}] of {where} has an invalid 'name' {name!r}.")
        if name in own:
            raise DtdlError(f"Invalid model: {where} declares '{name}' more than once.")
        if kind in ("Property", "Telemetry"):
            _check_schema_shape(element.get("schema"), f"{where}, '{name}'", schemas)
        elif kind == "Component":
            schema = element.get("schema")
            if not isinstance(schema, str) or not is_dtmi(schema):
                raise DtdlError(f"Invalid model: component '{name}' of {where} must name its interface by DTMI.")
            references.add(schema)
        elif kind == "Relationship":
            target = element.get("target")
            if target is not None:
                if not is_dtmi(target):
                    raise DtdlError(f"Invalid model: 'target' of relationship '{name}' in {where} is not a DTMI.")
                references.add(target)
            for p in _as_list(element.get("properties")):
                if not isinstance(p, dict) or _kind(p) != "Property" or not isinstance(p.get("name"), str):
                    raise DtdlError(f"Invalid model: relationship '{name}' of {where} has an invalid property.")
                _check_schema_shape(p.get("schema"), f"{where}, '{name}.{p['name']}'", schemas)
        own[name] = Content(name, kind, element, model_id)
    return ParsedModel(model_id, definition, extends, own, references, schemas)


def _check_schema_shape(schema: Any, where: str, named: dict[str, Any]) -> None:
    if isinstance(schema, str):
        if schema in PRIMITIVES or schema in named or is_dtmi(schema):
            return
        raise DtdlError(f"Invalid model: {where} has unknown schema {schema!r}.")
    if not isinstance(schema, dict):
        raise DtdlError(f"Invalid model: {where} has no valid 'schema'.")
    types = _types(schema)
    if "Object" in types:
        for f in _as_list(schema.get("fields")):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                raise DtdlError(f"Invalid model: an Object field in {where} has no name.")
            _check_schema_shape(f.get("schema"), f"{where}.{f['name']}", named)
    elif "Map" in types:
        mv = schema.get("mapValue")
        if not isinstance(mv, dict):
            raise DtdlError(f"Invalid model: Map schema in {where} has no 'mapValue'.")
        _check_schema_shape(mv.get("schema"), f"{where} map value", named)
    elif "Array" in types:
        _check_schema_shape(schema.get("elementSchema"), f"{where} element", named)
    elif "Enum" in types:
        if not isinstance(schema.get("enumValues"), list):
            raise DtdlError(f"Invalid model: Enum schema in {where} has no 'enumValues'.")
    else:
        raise DtdlError(f"Invalid model: {where} has an unsupported schema type {schema.get('@type')!r}.")


def resolve_contents(model_id: str, models: dict[str, ParsedModel]) -> dict[str, Content]:
    """All contents of `model_id`, inherited ones included; raises on cycles and clashes."""
    out: dict[str, Content] = {}

    def visit(mid: str, chain: tuple[str, ...]) -> None:
        if mid in chain:
            raise DtdlError(f"Invalid model: 'extends' forms a cycle: {' -> '.join((*chain, mid))}.")
        pm = models.get(mid)
        if pm is None:
            raise DtdlError(f"Invalid model: {mid} could not be resolved.")
        for parent in pm.extends:
            visit(parent, (*chain, mid))
        for name, content in pm.own.items():
            seen = out.get(name)
            if seen is not None and seen.defined_in != content.defined_in:
                raise DtdlError(
                    f"Invalid model: '{name}' is declared by both {seen.defined_in} and {content.defined_in} "
                    f"in the inheritance of {model_id}."
                )
            out[name] = content

    visit(model_id, ())
    return out


def ancestors(model_id: str, models: dict[str, ParsedModel]) -> set[str]:
    """`model_id` and every interface it extends, transitively."""
    seen: set[str] = set()
    stack = [model_id]
    while stack:
        mid = stack.pop()
        if mid in seen:
            continue
        seen.add(mid)
        pm = models.get(mid)
        if pm is not None:
            stack.extend(pm.extends)
    return seen


def named_schemas(model_id: str, models: dict[str, ParsedModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mid in ancestors(model_id, models):
        pm = models.get(mid)
        if pm is not None:
            out.update(pm.schemas)
    return out


# --- value checks ------------------------------------------------------------------------------

_INT_KINDS = {"integer", "long", "short", "byte", "unsignedByte", "unsignedInteger", "unsignedLong", "unsignedShort"}
_DURATION_RE = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def check_value(schema: Any, value: Any, path: str, named: dict[str, Any]) -> list[str]:
    """Problems with `value` against a DTDL schema; empty when it fits."""
    if value is None:
        return [f"{path}: null is not a valid value."]
    if isinstance(schema, str):
        if schema in named:
            return check_value(named[schema], value, path, named)
        return _check_primitive(schema, value, path)
    if not isinstance(schema, dict):
        return []
    types = _types(schema)
    if "Object" in types:
        if not isinstance(value, dict):
            return [f"{path}: expected an object."]
        fields = {f["name"]: f for f in _as_list(schema.get("fields")) if isinstance(f, dict)}
        problems: list[str] = []
        for k, v in value.items():
            if k == "$metadata":
                continue
            f = fields.get(k)
            if f is None:
                problems.append(f"{path}/{k}: '{k}' is not a field of the object schema.")
            else:
                problems.extend(check_value(f.get("schema"), v, f"{path}/{k}", named))
        return problems
    if "Map" in types:
        if not isinstance(value, dict):
            return [f"{path}: expected a map (JSON object)."]
        mv = schema.get("mapValue") or {}
        problems = []
        for k, v in value.items():
            problems.extend(check_value(mv.get("schema"), v, f"{path}/{k}", named))
        return problems
    if "Array" in types:
        if not isinstance(value, list):
            return [f"{path}: expected an array."]
        problems = []
        for i, v in enumerate(value):
            problems.extend(check_value(schema.get("elementSchema"), v, f"{path}/{i}", named))
        return problems
    if "Enum" in types:
        allowed = [ev.get("enumValue") for ev in _as_list(schema.get("enumValues")) if isinstance(ev, dict)]
        if value not in allowed:
            return [f"{path}: {value!r} is not one of the enum values {allowed!r}."]
        return []
    return []


def _check_primitive(schema: str, value: Any, path: str) -> list[str]:
    ok: bool
    if schema == "boolean":
        ok = isinstance(value, bool)
    elif schema in _INT_KINDS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif schema in ("double", "float", "decimal"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif schema in ("string", "uuid", "bytes"):
        ok = isinstance(value, str)
    elif schema == "dateTime":
        ok = isinstance(value, str) and _parses(datetime.fromisoformat, value)
    elif schema == "date":
        ok = isinstance(value, str) and _parses(date.fromisoformat, value)
    elif schema == "time":
        ok = isinstance(value, str) and _parses(time.fromisoformat, value)
    elif schema == "duration":
        ok = isinstance(value, str) and bool(_DURATION_RE.match(value))
    else:
        ok = True  # a DTMI-named schema declared elsewhere: the parser resolved it at upload
    return [] if ok else [f"{path}: {value!r} is not a valid {schema}."]


def _parses(fn: Any, text: str) -> bool:
    try:
        fn(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return False
    return True
