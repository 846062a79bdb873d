"""Holds recorded ARM and Digital Twins exchanges to Azure's published OpenAPI (Swagger 2.0) documents.

The documents (`specs/`, see `specs/extract.py` for where each comes from) are turned into JSON
Schema 2020-12 and checked with `jsonschema`, with the rules Azure's own model validator applies
and strictness plain JSON Schema lacks:

- request bodies: required properties present, no property the schema does not declare
  (`unevaluatedProperties: false` wherever a schema declares its properties, so `allOf`
  inheritance counts), enum values, no `readOnly` property sent;
- answers: a status code the operation declares (an error status may fall to `default`), a body
  exactly where the operation declares one, of the declared shape and types, and no property the
  type does not declare;
- Swagger 2.0 polymorphism (`discriminator` + `x-ms-discriminator-value`): an object is checked
  as the subtype its discriminator names;
- null: allowed for a property that is not required unless it says `x-nullable: false`, and for
  any property that says `x-nullable: true` (as autorest and Azure's validator read Swagger 2.0).

A call whose path, method and api-version match no kept operation is a violation too: a new
resource kind or api-version cannot pass without its document.

Violation messages name JSON paths, property names and schema constraints, never a value that
could be a secret (keys and connection strings travel in these bodies).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sandbox.core.exchanges import Exchange

SPEC_ROOT = Path(__file__).resolve().parent / "specs"
# A base for the documents' URIs, so `$ref`s resolve the same wherever the checkout lives.
BASE_URI = "https://azure-rest-api-specs.invalid/"
READ_ONLY_MARK = "x-conformance-read-only"
SCHEMA_KEYS_IN_OBJECT = ("properties", "allOf")


@dataclass(frozen=True)
class Violation:
    side: str  # "request" | "response" | "specification"
    call: str  # "PUT /subscriptions/.../sites/app (2025-05-01)"
    message: str

    def __str__(self) -> str:
        return f"[{self.side}] {self.call}: {self.message}"


@dataclass(frozen=True)
class Operation:
    document: str  # path of the document under specs/
    service: str  # "arm" | the data plane's service folder, e.g. "digitaltwins"
    api_version: str
    template: str
    method: str
    pattern: re.Pattern[str]
    literal_length: int
    pointer: str  # JSON pointer of the operation object in its document

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.template} ({self.api_version})"


@dataclass
class Report:
    checked: int = 0
    operations: set[str] = field(default_factory=set)
    resource_types: set[str] = field(default_factory=set)
    violations: list[Violation] = field(default_factory=list)

    def count(self, side: str) -> int:
        return sum(1 for v in self.violations if v.side == side)

    def summary(self) -> str:
        return (f"{self.checked} calls checked ({len(self.operations)} operations, {len(self.resource_types)} "
                f"resource types): {self.count('request')} request violations, {self.count('response')} response "
                f"violations, {self.count('specification')} calls without a specification")


# --- documents ---------------------------------------------------------------------------------


def load_documents(root: Path = SPEC_ROOT) -> dict[str, dict[str, Any]]:
    return {f.relative_to(root).as_posix(): json.loads(f.read_text()) for f in sorted(root.rglob("*.json"))}


def split_ref(ref: str, current: str) -> tuple[str, str]:
    import posixpath

    target, _, pointer = ref.partition("#")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(current), target)) if target else current
    return path, pointer


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def lookup(docs: dict[str, dict[str, Any]], path: str, pointer: str) -> Any:
    node: Any = docs[path]
    for part in (p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/") if p):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def service_of(path: str) -> str:
    parts = path.split("/")
    return parts[1] if "data-plane" in parts else "arm"


# --- Swagger 2.0 -> JSON Schema 2020-12 ---------------------------------------------------------


class Translator:
    """Rewrites every schema of the documents for one side of a call ("request" or "response")."""

    def __init__(self, docs: dict[str, dict[str, Any]], side: str) -> None:
        self.docs = docs
        self.side = side
        self.descendants = self._descendants()

    def _target(self, ref: str, current: str) -> tuple[str, str, Any]:
        path, pointer = split_ref(ref, current)
        return path, pointer, lookup(self.docs, path, pointer)

    def _descendants(self) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
        """(document, pointer of a base) -> [(document, pointer, discriminator value)] of every subtype."""
        children: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for path, doc in self.docs.items():
            for name, definition in doc.get("definitions", {}).items():
                for part in definition.get("allOf", []) if isinstance(definition, dict) else []:
                    if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                        base = split_ref(part["$ref"], path)
                        children.setdefault(base, []).append((path, f"/definitions/{escape(name)}"))
        out: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for base in children:
            found: list[tuple[str, str, str]] = []
            stack = list(children[base])
            while stack:
                path, pointer = stack.pop()
                definition = lookup(self.docs, path, pointer)
                value = definition.get("x-ms-discriminator-value") or pointer.rsplit("/", 1)[-1]
                found.append((path, pointer, str(value)))
                stack.extend(children.get((path, pointer), []))
            out[base] = found
        return out

    def _structured(self, ref: str, current: str) -> bool:
        _, _, target = self._target(ref, current)
        return isinstance(target, dict) and any(k in target for k in SCHEMA_KEYS_IN_OBJECT)

    def document(self, path: str) -> dict[str, Any]:
        doc = copy.deepcopy(self.docs[path])
        for name, definition in doc.get("definitions", {}).items():
            doc["definitions"][name] = self.schema(definition, path, use_site=False)
        for param in doc.get("parameters", {}).values():
            if isinstance(param.get("schema"), dict):
                param["schema"] = self.schema(param["schema"], path, use_site=True)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                if not isinstance(op, dict):
                    continue  # path-level "parameters" is a list
                for param in op.get("parameters", []):
                    if isinstance(param, dict) and isinstance(param.get("schema"), dict):
                        param["schema"] = self.schema(param["schema"], path, use_site=True)
                for response in op.get("responses", {}).values():
                    if isinstance(response.get("schema"), dict):
                        response["schema"] = self.schema(response["schema"], path, use_site=True)
        return doc

    def schema(self, node: dict[str, Any], path: str, use_site: bool) -> dict[str, Any]:
        """`use_site`: where an instance is checked as this schema (not an `allOf` member)."""
        if isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            out: dict[str, Any] = {"$ref": ref}
            if use_site and self._structured(ref, path):
                out["unevaluatedProperties"] = False
                subtypes = self.descendants.get(split_ref(ref, path))
                _, _, base = self._target(ref, path)
                disc = base.get("discriminator") if isinstance(base, dict) else None
                if subtypes and disc:
                    out["allOf"] = [
                        {"if": {"properties": {disc: {"const": value}}, "required": [disc]},
                         "then": {"$ref": f"{BASE_URI}{sub_path}#{quote(pointer, safe='/~')}"}}
                        for sub_path, pointer, value in subtypes
                    ]
            return out
        out = {k: v for k, v in node.items() if k not in ("properties", "items", "additionalProperties", "allOf")}
        if out.get("type") == "file":
            del out["type"]
        required = set(node.get("required", []))
        if isinstance(node.get("properties"), dict):
            props: dict[str, Any] = {}
            read_only = []
            for name, prop in node["properties"].items():
                sub = self.schema(prop, path, use_site=True)
                if prop.get("readOnly"):
                    read_only.append(name)
                    if self.side == "request":
                        sub = {"not": {}, READ_ONLY_MARK: True}
                if prop.get("x-nullable") is True or (name not in required and prop.get("x-nullable") is not False):
                    sub = {"anyOf": [{"type": "null"}, sub]}
                props[name] = sub
            out["properties"] = props
            if self.side == "request" and read_only and "required" in out:
                out["required"] = [r for r in out["required"] if r not in read_only]
        if isinstance(node.get("items"), dict):
            items = self.schema(node["items"], path, use_site=True)
            out["items"] = {"anyOf": [{"type": "null"}, items]} if node["items"].get("x-nullable") else items
        if isinstance(node.get("additionalProperties"), dict):
            extra = self.schema(node["additionalProperties"], path, use_site=True)
            nullable = node["additionalProperties"].get("x-nullable")
            out["additionalProperties"] = {"anyOf": [{"type": "null"}, extra]} if nullable else extra
        elif "additionalProperties" in node:
            out["additionalProperties"] = node["additionalProperties"]
        if isinstance(node.get("allOf"), list):
            out["allOf"] = [self.schema(p, path, use_site=False) for p in node["allOf"]]
        if use_site and any(k in node for k in SCHEMA_KEYS_IN_OBJECT) and "additionalProperties" not in node:
            out["unevaluatedProperties"] = False
        return out


# --- the checker -------------------------------------------------------------------------------


def _template_pattern(template: str, params: dict[str, dict[str, Any]]) -> tuple[re.Pattern[str], int]:
    regex, literal = "", 0
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{") and piece.endswith("}"):
            spec = params.get(piece[1:-1], {})
            # `{scope}` and the like span segments (they are sent unencoded).
            regex += "(.+)" if spec.get("x-ms-skip-url-encoding") else "([^/]+)"
        else:
            regex += re.escape(piece)
            literal += len(piece)
    return re.compile(regex, re.IGNORECASE), literal


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def resource_type_of(path: str) -> str:
    """`Microsoft.Web/sites/config` for an ARM path (the provider's types, nested ones joined)."""
    parts = [p for p in path.split("/") if p]
    lower = [p.lower() for p in parts]
    if "providers" not in lower:
        return "Microsoft.Resources/resourceGroups" if "resourcegroups" in lower else "Microsoft.Resources/subscriptions"
    i = len(lower) - 1 - lower[::-1].index("providers")
    rest = parts[i + 1:]
    return "/".join([rest[0], *rest[1::2]]) if rest else ""


class Specs:
    def __init__(self, root: Path = SPEC_ROOT) -> None:
        self.docs = load_documents(root)
        self.operations = list(self._operations())
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}
        self.registries = {side: self._registry(side) for side in ("request", "response")}

    def _operations(self) -> Iterator[Operation]:
        for path, doc in self.docs.items():
            version = str(doc.get("info", {}).get("version", ""))
            for template, item in doc.get("paths", {}).items():
                for method in item:
                    if method == "parameters":
                        continue
                    params = {p["name"]: p for p in self.parameters(path, template, method) if "name" in p}
                    pattern, literal = _template_pattern(template, params)
                    yield Operation(path, service_of(path), version, template, method, pattern, literal,
                                    f"/paths/{escape(template)}/{method}")

    def _registry(self, side: str) -> Registry:
        translator = Translator(self.docs, side)
        resources = [(f"{BASE_URI}{path}", Resource.from_contents(translator.document(path), DRAFT202012))
                     for path in self.docs]
        return Registry().with_resources(resources)

    def parameters(self, path: str, template: str, method: str) -> list[dict[str, Any]]:
        """The operation's parameters (path-level ones included), `$ref`s resolved, each with where it is."""
        item = self.docs[path]["paths"][template]
        out = []
        for source, params in (("item", item.get("parameters", [])), ("op", item[method].get("parameters", []))):
            for index, param in enumerate(params):
                where = (path, f"/paths/{escape(template)}" + (f"/{method}" if source == "op" else "")
                         + f"/parameters/{index}")
                if isinstance(param.get("$ref"), str):
                    where = split_ref(param["$ref"], path)
                    param = lookup(self.docs, *where)
                out.append({**param, "_where": where})
        return out

    def match(self, exchange: Exchange) -> Operation | None:
        path = exchange.spec_path.rstrip("/") or "/"
        candidates = [op for op in self.operations
                      if op.service == exchange.service and op.api_version == exchange.api_version
                      and op.method == exchange.method.lower() and op.pattern.fullmatch(path)]
        return max(candidates, key=lambda op: op.literal_length, default=None)

    def validator(self, side: str, document: str, pointer: str) -> Draft202012Validator:
        key = (side, document, pointer)
        if key not in self._validators:
            root = {"$ref": f"{BASE_URI}{document}#{quote(pointer, safe='/~')}"}
            self._validators[key] = Draft202012Validator(root, registry=self.registries[side])
        return self._validators[key]

    # --- one exchange ---

    def check(self, exchange: Exchange) -> tuple[Operation | None, list[Violation]]:
        op = self.match(exchange)
        call = f"{exchange.method} {exchange.spec_path} ({exchange.service} {exchange.api_version or 'no api-version'})"
        if op is None:
            return None, [Violation("specification", call, "no kept OpenAPI document declares this operation at "
                                    "this api-version (add it to tests/conformance/specs/extract.py)")]
        call = f"{exchange.method} {op.template} ({op.api_version}, {exchange.status})"
        return op, [*self._check_request(op, exchange, call), *self._check_response(op, exchange, call)]

    def _check_request(self, op: Operation, exchange: Exchange, call: str) -> Iterator[Violation]:
        params = self.parameters(op.document, op.template, op.method)
        for param in params:
            if param.get("in") == "query" and param.get("required") and param["name"] not in exchange.query:
                yield Violation("request", call, f"required query parameter {param['name']} is missing")
        body_params = [p for p in params if p.get("in") == "body"]
        body = exchange.request_body
        if not body_params:
            if body not in (None, {}):
                yield Violation("request", call, "sends a body, but the operation takes none")
            return
        param = body_params[0]
        if body is None:
            if param.get("required"):
                yield Violation("request", call, f"the required body ({param['name']}) is missing")
            return
        document, pointer = param["_where"]
        for message in self._errors("request", document, pointer + "/schema", body):
            yield Violation("request", call, message)

    def _check_response(self, op: Operation, exchange: Exchange, call: str) -> Iterator[Violation]:
        responses = lookup(self.docs, op.document, op.pointer)["responses"]
        status = str(exchange.status)
        if status in responses:
            key = status
        elif exchange.status >= 400 and "default" in responses:
            key = "default"
        else:
            yield Violation("response", call, f"status {status} is not one the operation declares "
                            f"({', '.join(sorted(responses))})")
            return
        declared = responses[key]
        body = exchange.response_body
        if "schema" not in declared:
            if body is not None and exchange.status < 400:
                yield Violation("response", call, f"answers a body, but the operation declares none for {status}")
            return
        if body is None:
            if exchange.method != "HEAD":
                yield Violation("response", call, f"answers no body, but the operation declares one for {status}")
            return
        pointer = f"{op.pointer}/responses/{escape(key)}/schema"
        for message in self._errors("response", op.document, pointer, body):
            yield Violation("response", call, message)

    def _errors(self, side: str, document: str, pointer: str, instance: Any) -> Iterator[str]:
        errors = [leaf for error in self.validator(side, document, pointer).iter_errors(instance)
                  for leaf in unwrap(error)]
        for error in errors:
            if not _cascade(error, errors):
                yield describe(error)

    # --- many exchanges ---

    def report(self, exchanges: Iterable[Exchange]) -> Report:
        report = Report()
        for exchange in exchanges:
            report.checked += 1
            op, violations = self.check(exchange)
            if op is not None:
                report.operations.add(op.name)
                if op.service == "arm":
                    report.resource_types.add(resource_type_of(op.template))
                else:
                    report.resource_types.add(f"{op.service} data plane")
            report.violations.extend(violations)
        return report


def _cascade(error: ValidationError, errors: list[ValidationError]) -> bool:
    """An `unevaluatedProperties` error that only repeats a deeper one: a failed subtype (`then`)
    branch drops its annotations, so the property it failed on also shows as unevaluated above."""
    if error.validator != "unevaluatedProperties":
        return False
    names = re.findall(r"'([^']+)'", error.message)
    deeper = [str(e.json_path) for e in errors if e is not error]
    return bool(names) and all(any(p.startswith(f"{error.json_path}.{n}") or p.startswith(f"{error.json_path}['{n}']")
                                   for p in deeper) for n in names)


def unwrap(error: ValidationError) -> list[ValidationError]:
    """The errors inside the nullable wrapper (`anyOf: [null, schema]`): why the non-null branch failed."""
    if error.validator == "anyOf" and error.context:
        real = [i for i, b in enumerate(error.validator_value) if b != {"type": "null"}]
        if len(real) == 1:
            inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == real[0]]
            return [leaf for e in inner for leaf in unwrap(e)]
    return [error]


def describe(error: ValidationError) -> str:
    """A plain sentence for a validation error, without the instance's value (it may be a secret)."""
    where = error.json_path
    if error.validator == "not" and isinstance(error.schema, dict) and error.schema.get(READ_ONLY_MARK):
        return f"{where}: a readOnly property was sent"
    if error.validator in ("unevaluatedProperties", "required", "additionalProperties"):
        return f"{where}: {error.message}"
    if error.validator == "type":
        return f"{where}: expected {error.validator_value}, got {_json_type(error.instance)}"
    if error.validator == "enum":
        shown = error.instance if isinstance(error.instance, str) and len(error.instance) <= 60 else "the value"
        return f"{where}: {shown!r} is not one of {error.validator_value}"
    return f"{where}: does not satisfy {error.validator} {json.dumps(error.validator_value)[:120]}"
