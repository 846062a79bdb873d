"""Semantic checks of a deployment spec, and the `Problem`/`SpecError` every loader reports with.

`validate_spec` runs on a spec that is already structurally valid (pydantic accepted it) and
collects every problem at once: twin name rules per used cloud, layer placement, device ids,
the DTDL hierarchy, the TwinMaker tree and event conditions. Nothing here raises for bad input;
problems are returned so that a caller can show all of them in one go.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared.naming import AWS_LAMBDA, AwsNaming, AzureNaming, GcpNaming, NameRule, is_valid_dtmi
from shared.spec import AzureHierarchy, Device, TwinMakerNode, TwinSpec


@dataclass(frozen=True)
class Problem:
    """One problem of a spec: where (a JSON path, "" for the root) and what to do about it."""

    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(Exception):
    """A spec could not be accepted. `problems` lists every problem found, never empty."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            self.problems = [Problem("", "the spec is invalid")]
        super().__init__(self._summary())

    def _summary(self) -> str:
        lines = [str(p) for p in self.problems]
        head = "1 problem" if len(lines) == 1 else f"{len(lines)} problems"
        return f"invalid deployment spec ({head}):\n" + "\n".join(f"  {line}" for line in lines)

    def to_json(self) -> list[dict[str, str]]:
        return [p.to_json() for p in self.problems]


# ---------------------------------------------------------------------------------------------
# Event conditions: `A OP B`
# ---------------------------------------------------------------------------------------------

Operator = Literal["<", ">", "=="]
OPERATORS: tuple[Operator, ...] = ("<", ">", "==")
ConstantType = Literal["DOUBLE", "INTEGER", "STRING"]

_SEGMENT = r"[A-Za-z0-9_-]+"
_REFERENCE = re.compile(rf"({_SEGMENT})\.({_SEGMENT})\.({_SEGMENT})")
_CONSTANT = re.compile(r"([A-Za-z]+)\((.*)\)", re.DOTALL)
# Operators we do not support but people will try; named in the error so the fix is obvious.
_UNSUPPORTED_OPERATORS = ("<=", ">=", "!=", "<>", "=")


@dataclass(frozen=True)
class Reference:
    """A live value: property `property` of component `component` of entity `entity`."""

    entity: str
    component: str
    property: str

    def __str__(self) -> str:
        return f"{self.entity}.{self.component}.{self.property}"


@dataclass(frozen=True)
class Constant:
    """A typed literal such as `DOUBLE(30)`; `value` is already a float, int or str."""

    type: ConstantType
    value: float | int | str

    def __str__(self) -> str:
        return f"{self.type}({self.value})"


Operand = Reference | Constant


@dataclass(frozen=True)
class Condition:
    left: Operand
    op: Operator
    right: Operand

    def references(self) -> list[Reference]:
        return [o for o in (self.left, self.right) if isinstance(o, Reference)]

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


class ConditionError(ValueError):
    """An event condition does not parse; the message says why in plain words."""


def _split_condition(text: str) -> tuple[str, str, str]:
    """Split at the one comparison operator outside parentheses (a STRING(...) may contain one)."""
    depth = 0
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in "<>=!":
            j = i
            while j < len(text) and text[j] in "<>=!":
                j += 1
            found.append((i, text[i:j]))
            i = j
            continue
        i += 1
    if not found:
        raise ConditionError("has no comparison; write it as 'A OP B' with OP one of <, >, ==")
    if len(found) > 1:
        ops = ", ".join(quote_value(op) for _, op in found[:5])
        raise ConditionError(f"has more than one comparison ({ops}); write one 'A OP B' per event")
    at, op = found[0]
    if op not in OPERATORS:
        if op in _UNSUPPORTED_OPERATORS:
            raise ConditionError(f"uses operator {quote_value(op)}, which is not supported; use <, > or ==")
        raise ConditionError(f"has an unknown operator {quote_value(op)}; use <, > or ==")
    return text[:at].strip(), op, text[at + len(op) :].strip()


def _parse_operand(text: str, side: str) -> Operand:
    if not text:
        raise ConditionError(f"has nothing on the {side} of the comparison")
    ref = _REFERENCE.fullmatch(text)
    if ref:
        return Reference(*ref.groups())
    const = _CONSTANT.fullmatch(text)
    if const:
        kind, raw = const.group(1), const.group(2)
        if kind == "DOUBLE":
            try:
                number = float(raw.strip())
            except ValueError:
                raise ConditionError(f"{side} operand {quote_value(text)}: DOUBLE needs a number, e.g. DOUBLE(30.5)") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ConditionError(f"{side} operand {quote_value(text)}: DOUBLE needs a finite number")
            return Constant("DOUBLE", number)
        if kind == "INTEGER":
            if not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", raw):
                raise ConditionError(f"{side} operand {quote_value(text)}: INTEGER needs a whole number, e.g. INTEGER(5)")
            return Constant("INTEGER", int(raw))
        if kind == "STRING":
            return Constant("STRING", raw)
        raise ConditionError(f"{side} operand {quote_value(text)}: unknown literal type {quote_value(kind)}; use DOUBLE(...), INTEGER(...) or STRING(...)")
    if "." in text:
        raise ConditionError(
            f"{side} operand {quote_value(text)} is not a reference; write entity.component.property "
            "(three names of letters, digits, - and _, separated by dots)"
        )
    raise ConditionError(
        f"{side} operand {quote_value(text)} is neither entity.component.property nor a literal such as DOUBLE(30), INTEGER(5), STRING(x)"
    )


def parse_condition(text: str) -> Condition:
    """Parse an event condition `A OP B`. Raises `ConditionError` with a plain message."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("is empty; write it as 'A OP B', e.g. room-1.sensor-1.temperature > DOUBLE(30)")
    left_text, op, right_text = _split_condition(text.strip())
    left = _parse_operand(left_text, "left")
    right = _parse_operand(right_text, "right")
    if isinstance(left, Constant) and isinstance(right, Constant):
        raise ConditionError("compares two literals; one side must be entity.component.property")
    return Condition(left, op, right)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------

LAYER_SLOTS: dict[str, str] = {
    "layer_1_provider": "Layer 1 (IoT)",
    "layer_2_provider": "Layer 2 (compute)",
    "layer_3_hot_provider": "Layer 3 hot storage",
    "layer_3_cold_provider": "Layer 3 cold storage",
    "layer_3_archive_provider": "Layer 3 archive storage",
    "layer_4_provider": "Layer 4 (twins)",
    "layer_5_provider": "Layer 5 (visualisation)",
}

# Device ids enter IoT Hub device ids, IoT thing names, Lambda names and MQTT topics; this is the
# common subset that all of them accept.
_DEVICE_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
# DTDL content names (DTDL v3: letters, digits, underscores, starting with a letter, not ending in '_').
_DTDL_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]{0,510}[A-Za-z0-9])?")
_DTDL_CONTENT_TYPES = {"Property", "Telemetry", "Relationship", "Component", "Command"}


QUOTE_PREFIX_CHARS = 40
_BOUNDED_REPR = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_BOUNDED_REPR.maxlevel, _BOUNDED_REPR.maxlist, _BOUNDED_REPR.maxdict = 2, 4, 4
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = _BOUNDED_REPR.maxlong = QUOTE_PREFIX_CHARS
"""A message quotes at most this many characters of a value (a 10 MB name must not become a
10 MB message, let alone one per rule it breaks)."""


def quote_value(value: Any) -> str:
    """A user value for a message: its first `QUOTE_PREFIX_CHARS` characters, then `...`, with
    control characters escaped (repr)."""
    if isinstance(value, str):
        return repr(value if len(value) <= QUOTE_PREFIX_CHARS else value[:QUOTE_PREFIX_CHARS] + "...")
    text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= 2 * QUOTE_PREFIX_CHARS else text[: 2 * QUOTE_PREFIX_CHARS] + "..."


_q = quote_value


def _named_resources(twin: str, providers: Iterable[str]) -> list[tuple[str, NameRule]]:
    named: list[tuple[str, NameRule]] = []
    if "azure" in providers:
        named += AzureNaming(twin).all_names()
    if "aws" in providers:
        named += AwsNaming(twin).all_names()
    if "gcp" in providers:
        named += GcpNaming(twin).all_names()
    return named


def twin_name_rule_problems(twin: str, providers: Iterable[str]) -> list[str]:
    """The naming rules `twin` breaks on the given clouds, one sentence per broken rule (the
    same rules as `shared.naming.twin_name_problems`, grouped so that six Function App names
    failing one rule read as one problem)."""
    if not twin:
        return ["the twin name must not be empty: it prefixes every cloud resource"]
    providers = list(providers)
    too_long: dict[NameRule, list[str]] = {}
    too_short: dict[NameRule, list[str]] = {}
    bad_chars: dict[NameRule, list[str]] = {}
    for name, rule in _named_resources(twin, providers):
        if len(name) > rule.max_len:
            too_long.setdefault(rule, []).append(name)
        elif len(name) < rule.min_len:
            too_short.setdefault(rule, []).append(name)
        if not re.fullmatch(rule.pattern, name):
            bad_chars.setdefault(rule, []).append(name)
    out: list[str] = []
    for rule, names in too_long.items():
        excess = max(len(n) for n in names) - rule.max_len
        out.append(
            f"too long for {rule.kind} names ({rule.min_len}-{rule.max_len} characters): {_names(names)} "
            f"would be; shorten the twin name by {excess} character{'s' if excess != 1 else ''}"
        )
    for rule, names in too_short.items():
        out.append(f"too short for {rule.kind} names ({rule.min_len}-{rule.max_len} characters): {_names(names)} would be")
    for rule, names in bad_chars.items():
        out.append(f"breaks the {rule.kind} name rule ({rule.description}): {_names(names)}")
    return out


def _names(names: list[str]) -> str:
    shown = ", ".join(quote_value(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _check_twin(spec: TwinSpec) -> Iterator[Problem]:
    used = spec.used_providers()
    for message in twin_name_rule_problems(spec.twin.name, used):
        yield Problem("twin.name", f"twin name {_q(spec.twin.name)} {message}" if spec.twin.name else message)
    if spec.twin.hot_storage_days >= spec.twin.cold_storage_days:
        yield Problem(
            "twin.hot_storage_days",
            f"hot_storage_days ({spec.twin.hot_storage_days}) must be less than cold_storage_days "
            f"({spec.twin.cold_storage_days}): data moves from hot to cold storage",
        )


def _check_providers(spec: TwinSpec) -> Iterator[Problem]:
    for slot in ("layer_4_provider", "layer_5_provider"):
        if getattr(spec.providers, slot) == "gcp":
            yield Problem(
                f"providers.{slot}",
                f"{LAYER_SLOTS[slot]} cannot run on gcp (GCP has no managed service for it); choose aws or azure",
            )


def _check_devices(spec: TwinSpec) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    aws_used = "aws" in spec.used_providers()
    aws = AwsNaming(spec.twin.name)
    base = set(aws.all_names()) if aws_used else set()
    for i, device in enumerate(spec.devices):
        path = f"devices[{i}]"
        if device.id in seen:
            yield Problem(f"{path}.id", f"device id {_q(device.id)} is already used by devices[{seen[device.id]}]")
        else:
            seen[device.id] = i
        if not _DEVICE_ID.fullmatch(device.id):
            yield Problem(
                f"{path}.id",
                f"device id {_q(device.id)} must be 1-64 letters, digits, - and _, starting and ending with a "
                "letter or digit (it becomes part of cloud resource names)",
            )
        elif aws_used:
            # Only the names that include the device id; the twin-only ones are reported on twin.name.
            for name, rule in aws.all_names([device.id]):
                if (name, rule) not in base:
                    for message in rule.problems(name):
                        yield Problem(f"{path}.id", message)
        yield from _check_device_properties(device, path)


def _check_device_properties(device: Device, path: str) -> Iterator[Problem]:
    # Time-series and constant properties share one namespace on the twin (TwinMaker component,
    # ADT twin), so a name may appear once across both lists.
    seen: dict[str, str] = {}
    named = [(f"{path}.properties[{j}]", p.name) for j, p in enumerate(device.properties)]
    named += [(f"{path}.constProperties[{j}]", p.name) for j, p in enumerate(device.const_properties)]
    for where, name in named:
        if not name.strip():
            yield Problem(f"{where}.name", "property name must not be empty")
        elif name in seen:
            yield Problem(f"{where}.name", f"property {_q(name)} is already declared at {seen[name]} of this device")
        else:
            seen[name] = where


def _check_required_hierarchy(spec: TwinSpec) -> Iterator[Problem]:
    l4 = spec.providers.layer_4_provider
    if l4 == "azure" and spec.hierarchy.azure is None:
        yield Problem(
            "hierarchy.azure",
            "layer 4 runs on azure, so the spec needs an Azure Digital Twins hierarchy "
            "(hierarchy.azure with models, twins and relationships, as in twin_hierarchy/azure_hierarchy.json)",
        )
    if l4 == "aws":
        if spec.hierarchy.aws is None:
            yield Problem(
                "hierarchy.aws",
                "layer 4 runs on aws, so the spec needs an IoT TwinMaker entity tree "
                "(hierarchy.aws, as in twin_hierarchy/aws_hierarchy.json)",
            )
        elif not spec.hierarchy.aws:
            yield Problem("hierarchy.aws", "the IoT TwinMaker entity tree is empty; add at least one entity")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class _Model:
    index: int
    extends: list[str]
    relationships: dict[str, str | None]  # relationship name -> target model id (None: any)
    properties: set[str]  # names of Property and Component contents (what a twin may set)


def _check_dtdl(hierarchy: AzureHierarchy) -> Iterator[Problem]:
    base = "hierarchy.azure"
    models: dict[str, _Model] = {}
    # Pass 1: each model on its own, and the index of model ids.
    pending_refs: list[tuple[str, str, str]] = []  # (path, model id referred to, what refers)
    for i, model in enumerate(hierarchy.models):
        path = f"{base}.models[{i}]"
        if not isinstance(model, Mapping):
            yield Problem(path, "a DTDL model must be a JSON object (an Interface)")
            continue
        model_id = model.get("@id")
        if model_id is None:
            yield Problem(f"{path}.@id", "a DTDL model needs an @id (a DTMI such as dtmi:example:Room;1)")
        elif not isinstance(model_id, str) or not is_valid_dtmi(model_id):
            yield Problem(
                f"{path}.@id",
                f"{_q(model_id)} is not a valid DTMI: expected dtmi:segment[:segment...];version, segments of "
                "letters, digits and _ (no hyphens), e.g. dtmi:example:Room;1",
            )
            model_id = None
        elif model_id in models:
            yield Problem(f"{path}.@id", f"model id {_q(model_id)} is already used by {base}.models[{models[model_id].index}]")
            model_id = None
        model_type = model.get("@type")
        if model_type is None:
            yield Problem(f"{path}.@type", "a DTDL model needs @type \"Interface\"")
        elif "Interface" not in _as_list(model_type):
            yield Problem(f"{path}.@type", f"a top-level DTDL model must have @type \"Interface\", not {_q(model_type)}")
        context = model.get("@context")
        if context is None:
            yield Problem(f"{path}.@context", "a DTDL model needs @context, e.g. \"dtmi:dtdl:context;3\"")
        elif not any(isinstance(c, str) and c.startswith("dtmi:dtdl:context;") for c in _as_list(context)):
            yield Problem(f"{path}.@context", f"@context must name a DTDL context such as \"dtmi:dtdl:context;3\", not {_q(context)}")
        entry = _Model(i, [], {}, set())
        extends = model.get("extends")
        if extends is not None:
            for k, parent in enumerate(_as_list(extends)):
                where = f"{path}.extends" if not isinstance(extends, list) else f"{path}.extends[{k}]"
                if not isinstance(parent, str):
                    yield Problem(where, "extends must name model ids (DTMIs)")
                else:
                    entry.extends.append(parent)
                    pending_refs.append((where, parent, "extends"))
        contents = model.get("contents", [])
        if not isinstance(contents, list):
            yield Problem(f"{path}.contents", "contents must be a list")
            contents = []
        names: dict[str, int] = {}
        for j, content in enumerate(contents):
            cpath = f"{path}.contents[{j}]"
            if not isinstance(content, Mapping):
                yield Problem(cpath, "each content must be a JSON object with @type and name")
                continue
            ctype = content.get("@type")
            ctypes = [t for t in _as_list(ctype) if isinstance(t, str)]
            kinds = [t for t in ctypes if t in _DTDL_CONTENT_TYPES]
            if ctype is None:
                yield Problem(f"{cpath}.@type", "needs @type: Property, Telemetry, Relationship, Component or Command")
            elif not kinds:
                yield Problem(f"{cpath}.@type", f"{_q(ctype)} is not a DTDL content type; use Property, Telemetry, Relationship, Component or Command")
            name = content.get("name")
            if not isinstance(name, str):
                yield Problem(f"{cpath}.name", "every content needs a name")
                continue
            if not _DTDL_NAME.fullmatch(name):
                yield Problem(f"{cpath}.name", f"DTDL name {_q(name)} must be letters, digits and _, start with a letter and not end with _")
            if name in names:
                yield Problem(f"{cpath}.name", f"name {_q(name)} is already used by {path}.contents[{names[name]}]; DTDL content names must be unique per model")
                continue
            names[name] = j
            if "Property" in kinds or "Component" in kinds:
                entry.properties.add(name)
            if "Relationship" in kinds:
                target = content.get("target")
                if target is not None and not isinstance(target, str):
                    yield Problem(f"{cpath}.target", "a relationship target must be a model id (DTMI)")
                    target = None
                if isinstance(target, str):
                    pending_refs.append((f"{cpath}.target", target, "target"))
                entry.relationships[name] = target
        if isinstance(model_id, str):
            models[model_id] = entry
    for where, ref, what in pending_refs:
        if ref not in models:
            yield Problem(where, f"{what} refers to model {_q(ref)}, which is not among hierarchy.azure.models")
    yield from _check_extends_cycles(models)

    # Twins.
    twins: dict[str, tuple[int, str]] = {}  # dtId -> (index, model id)
    for i, twin in enumerate(hierarchy.twins):
        path = f"{base}.twins[{i}]"
        if not twin.dt_id.strip():
            yield Problem(f"{path}.$dtId", "$dtId must not be empty")
        elif twin.dt_id in twins:
            yield Problem(f"{path}.$dtId", f"twin id {_q(twin.dt_id)} is already used by {base}.twins[{twins[twin.dt_id][0]}]")
            continue
        if twin.metadata.model not in models:
            yield Problem(f"{path}.$metadata.$model", f"model {_q(twin.metadata.model)} is not among hierarchy.azure.models")
        else:
            # Digital Twins rejects a twin that sets anything but a declared Property.
            declared_props = {n for m in _ancestry(twin.metadata.model, models) for n in models[m].properties}
            for key in twin.initial_properties():
                if key not in declared_props:
                    yield Problem(
                        f"{path}.{key}" if len(key) <= 60 and re.fullmatch(r"[A-Za-z_][\w-]*", key) else path,
                        f"model {_q(twin.metadata.model)} declares no Property {_q(key)}, so the twin cannot set it",
                    )
        twins[twin.dt_id] = (i, twin.metadata.model)

    # Relationships.
    seen_ids: dict[tuple[str, str], int] = {}
    for i, rel in enumerate(hierarchy.relationships):
        path = f"{base}.relationships[{i}]"
        source = twins.get(rel.source_id)
        target = twins.get(rel.target_id)
        if source is None:
            yield Problem(f"{path}.$dtId", f"source twin {_q(rel.source_id)} is not among hierarchy.azure.twins")
        if target is None:
            yield Problem(f"{path}.$targetId", f"target twin {_q(rel.target_id)} is not among hierarchy.azure.twins")
        if source is not None and source[1] in models:
            declared = _relationships_of(source[1], models)
            if rel.name not in declared:
                known = ", ".join(quote_value(n) for n in sorted(declared)[:10]) or "none"
                yield Problem(
                    f"{path}.$relationshipName",
                    f"model {_q(source[1])} of twin {_q(rel.source_id)} declares no relationship {_q(rel.name)} (declared: {known})",
                )
            elif target is not None:
                wanted = declared[rel.name]
                if wanted is not None and target[1] in models and wanted not in _ancestry(target[1], models):
                    yield Problem(
                        f"{path}.$targetId",
                        f"relationship {_q(rel.name)} must point to a twin of model {_q(wanted)}, but "
                        f"{_q(rel.target_id)} is a {_q(target[1])}",
                    )
        rel_key = (rel.source_id, rel.stable_id())
        if rel_key in seen_ids:
            where = f"{path}.$relationshipId" if rel.relationship_id is not None else path
            yield Problem(
                where,
                f"relationship id {_q(rel.stable_id())} of twin {_q(rel.source_id)} is already used by "
                f"{base}.relationships[{seen_ids[rel_key]}]",
            )
        else:
            seen_ids[rel_key] = i


def _ancestry(model_id: str, models: Mapping[str, _Model]) -> list[str]:
    """The model and every model it extends, transitively, cycle-safe."""
    order: list[str] = []
    stack = [model_id]
    while stack:
        current = stack.pop()
        if current in order or current not in models:
            continue
        order.append(current)
        stack.extend(reversed(models[current].extends))
    return order


def _relationships_of(model_id: str, models: Mapping[str, _Model]) -> dict[str, str | None]:
    declared: dict[str, str | None] = {}
    for ancestor in _ancestry(model_id, models):
        for name, target in models[ancestor].relationships.items():
            declared.setdefault(name, target)
    return declared


def _check_extends_cycles(models: Mapping[str, _Model]) -> Iterator[Problem]:
    reported: set[str] = set()
    for model_id, model in models.items():
        # A model is on a cycle when it reaches itself through extends.
        stack = list(model.extends)
        visited: set[str] = set()
        while stack:
            current = stack.pop()
            if current == model_id:
                if model_id not in reported:
                    reported.add(model_id)
                    yield Problem(
                        f"hierarchy.azure.models[{model.index}].extends",
                        f"model {_q(model_id)} extends itself through a cycle of extends",
                    )
                break
            if current in visited or current not in models:
                continue
            visited.add(current)
            stack.extend(models[current].extends)


def _check_twinmaker(nodes: list[TwinMakerNode], device_ids: set[str]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    stack: list[tuple[str, TwinMakerNode]] = [(f"hierarchy.aws[{i}]", n) for i, n in reversed(list(enumerate(nodes)))]
    while stack:
        path, node = stack.pop()
        if node.type == "entity":
            if node.id is None or not node.id.strip():
                yield Problem(f"{path}.id", "an entity needs an id")
            elif node.id in seen:
                yield Problem(f"{path}.id", f"entity id {_q(node.id)} is already used by {seen[node.id]}")
            else:
                seen[node.id] = path
        else:
            device_id = node.device_id()
            if device_id is None:
                yield Problem(path, "a component needs iotDeviceId (or a name equal to a device id)")
            elif device_id not in device_ids:
                field = "iotDeviceId" if node.iot_device_id else "name"
                yield Problem(f"{path}.{field}", f"component refers to device {_q(device_id)}, which is not among devices")
            if node.children:
                yield Problem(f"{path}.children", "a component cannot have children; put them under an entity")
        stack.extend((f"{path}.children[{j}]", c) for j, c in reversed(list(enumerate(node.children))))


def _check_events(spec: TwinSpec, device_ids: set[str]) -> Iterator[Problem]:
    aws = AwsNaming(spec.twin.name)
    devices = {d.id: d for d in spec.devices}
    for i, event in enumerate(spec.events):
        path = f"events[{i}]"
        try:
            condition = parse_condition(event.condition)
        except ConditionError as exc:
            yield Problem(f"{path}.condition", f"condition {_q(event.condition)} {exc}")
        else:
            # The component names a device (as in the original template): then its property must
            # be one the device sends or carries, else the checker would compare against nothing.
            for ref in condition.references():
                device = devices.get(ref.component)
                if device is not None:
                    known = [p.name for p in device.properties] + [p.name for p in device.const_properties]
                    if ref.property not in known:
                        yield Problem(
                            f"{path}.condition",
                            f"device {_q(ref.component)} has no property {_q(ref.property)} "
                            f"(it has: {', '.join(quote_value(k) for k in known[:10])})",
                        )
        names = [("functionName", event.action.function_name), ("functionNameB", event.action.function_name_b)]
        for field, name in names:
            if name is None:
                continue
            if not name.strip():
                yield Problem(f"{path}.action.{field}", "the action's function name must not be empty")
            elif spec.providers.layer_2_provider == "aws":
                # Event actions become Lambda functions named after the twin on an AWS L2.
                yield from (Problem(f"{path}.action.{field}", m) for m in AWS_LAMBDA.problems(aws.event_action(name)))
        feedback = event.action.feedback
        if feedback is not None and feedback.iot_device_id not in device_ids:
            yield Problem(
                f"{path}.action.feedback.iotDeviceId",
                f"feedback goes to device {_q(feedback.iot_device_id)}, which is not among devices",
            )


def validate_spec(spec: TwinSpec) -> list[Problem]:
    """Every semantic problem of a structurally valid spec, in document order; empty when fine."""
    device_ids = {d.id for d in spec.devices}
    problems: list[Problem] = []
    problems += _check_twin(spec)
    problems += _check_providers(spec)
    problems += _check_devices(spec)
    problems += _check_required_hierarchy(spec)
    if spec.hierarchy.azure is not None:
        problems += _check_dtdl(spec.hierarchy.azure)
    if spec.hierarchy.aws is not None:
        problems += _check_twinmaker(spec.hierarchy.aws, device_ids)
    problems += _check_events(spec, device_ids)
    return problems
