"""Firestore (Native mode) state: databases, documents, composite indexes and TTL settings, with the
query semantics the data plane needs.

Documents are kept as `google.firestore.v1.Document` protobufs. What Firestore enforces is enforced
here too: a database must have been created (Admin API) before its data plane answers; `Commit`
applies its writes atomically with their preconditions (`exists`, `updateTime`) and transforms;
queries order values across types as Firestore does (null < bool < number < timestamp < string <
bytes < reference < geopoint < array < map), add the implicit orderings (the inequality field, then
`__name__`), apply cursors, offset and limit; and a query that combines filters or orders on more
than one field needs a composite index that exists, or it fails FAILED_PRECONDITION "The query
requires an index", as on Google Cloud. TTL policies are stored (expiry deletion is not run: Google
gives no deadline for it either).
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from google.cloud.firestore_v1.types import document as document_types
from google.cloud.firestore_v1.types import query as query_types
from google.protobuf import timestamp_pb2

from sandbox.gcp.common import PROJECT_ID, GoogleError, now_rfc3339

Value = Any  # google.firestore.v1.Value (protobuf)
DocumentPb = Any
FieldOp = query_types.StructuredQuery.FieldFilter.Operator
UnaryOp = query_types.StructuredQuery.UnaryFilter.Operator
INEQUALITIES = frozenset({FieldOp.LESS_THAN, FieldOp.LESS_THAN_OR_EQUAL, FieldOp.GREATER_THAN,
                          FieldOp.GREATER_THAN_OR_EQUAL, FieldOp.NOT_EQUAL, FieldOp.NOT_IN})
_TYPE_RANK = {"null_value": 0, "boolean_value": 1, "integer_value": 2, "double_value": 2, "timestamp_value": 3,
              "string_value": 4, "bytes_value": 5, "reference_value": 6, "geo_point_value": 7, "array_value": 8,
              "map_value": 9}
MAX_DOCUMENT_BYTES = 1_048_576


def not_found_database(name: str) -> GoogleError:
    return GoogleError("NOT_FOUND", f"The database {name.split('/')[3] if name.count('/') >= 3 else name} does not "
                       f"exist for project {PROJECT_ID} Please visit https://console.cloud.google.com/datastore/setup"
                       f"?project={PROJECT_ID} to add a Cloud Datastore or Cloud Firestore database.")


def now_pb() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns() // 1000 * 1000)
    return ts


def value_key(v: Value) -> tuple[Any, ...]:
    """A sort key ordering values as Firestore does, across and within types."""
    kind = v.WhichOneof("value_type") or "null_value"
    rank = _TYPE_RANK[kind]
    if kind == "null_value":
        return (rank,)
    if kind == "boolean_value":
        return (rank, v.boolean_value)
    if kind in ("integer_value", "double_value"):
        n = float(v.integer_value) if kind == "integer_value" else v.double_value
        return (rank, 0, 0) if math.isnan(n) else (rank, 1, n)  # NaN sorts before every number
    if kind == "timestamp_value":
        return (rank, v.timestamp_value.seconds, v.timestamp_value.nanos)
    if kind == "string_value":
        return (rank, v.string_value.encode("utf-8"))
    if kind == "bytes_value":
        return (rank, v.bytes_value)
    if kind == "reference_value":
        return (rank, tuple(v.reference_value.split("/")))
    if kind == "geo_point_value":
        return (rank, v.geo_point_value.latitude, v.geo_point_value.longitude)
    if kind == "array_value":
        return (rank, tuple(value_key(x) for x in v.array_value.values))
    return (rank, tuple((k.encode(), value_key(v.map_value.fields[k])) for k in sorted(v.map_value.fields)))


def values_equal(a: Value, b: Value) -> bool:
    return value_key(a) == value_key(b)


def split_path(path: str) -> list[str]:
    """A field path (`a.b`, `` `x.y`.z ``) into its segments."""
    out: list[str] = []
    for m in re.finditer(r"`((?:[^`\\]|\\.)*)`|([^.`]+)", path):
        out.append(re.sub(r"\\(.)", r"\1", m.group(1)) if m.group(1) is not None else m.group(2))
    if not out:
        raise GoogleError("INVALID_ARGUMENT", f"invalid field path {path!r}")
    return out


def get_field(fields: Any, path: str) -> Value | None:
    current: Any = None
    container = fields
    for segment in split_path(path):
        if container is None or segment not in container:
            return None
        current = container[segment]
        container = current.map_value.fields if current.WhichOneof("value_type") == "map_value" else None
    return current


def set_field(fields: Any, path: str, value: Value | None) -> None:
    segments = split_path(path)
    container = fields
    for segment in segments[:-1]:
        if segment not in container or container[segment].WhichOneof("value_type") != "map_value":
            if value is None:
                return
            container[segment].map_value.SetInParent()
        container = container[segment].map_value.fields
    if value is None:
        container.pop(segments[-1], None)
    else:
        container[segments[-1]].CopyFrom(value)


@dataclass
class Database:
    body: dict[str, Any]
    documents: dict[str, DocumentPb] = field(default_factory=dict)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)


class FirestoreBackend:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._dbs: dict[str, Database] = {}
        self._transactions: set[bytes] = set()

    # --- admin --------------------------------------------------------------------------------------

    def create_database(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        database_id = name.rsplit("/", 1)[-1]
        if not re.fullmatch(r"\(default\)|[a-z][a-z0-9-]{2,62}", database_id):
            raise GoogleError("INVALID_ARGUMENT", f"database_id: {database_id!r} must be (default) or 4-63 characters "
                              "of lower case letters, digits and hyphens starting with a letter")
        db = {**body, "name": name, "uid": secrets.token_hex(16), "createTime": now_rfc3339(),
              "updateTime": now_rfc3339(), "type": body.get("type") or "FIRESTORE_NATIVE",
              "concurrencyMode": body.get("concurrencyMode") or "PESSIMISTIC",
              "locationId": body.get("locationId") or "nam5", "etag": secrets.token_hex(8)}
        with self._lock:
            if name in self._dbs:
                raise GoogleError("ALREADY_EXISTS", "Database already exists. Please use another database_id")
            self._dbs[name] = Database(db)
        return db

    def database(self, name: str) -> Database:
        with self._lock:
            db = self._dbs.get(name)
        if db is None:
            raise not_found_database(name)
        return db

    def list_databases(self, project: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d.body for n, d in sorted(self._dbs.items()) if n.startswith(f"projects/{project}/")]

    def delete_database(self, name: str) -> dict[str, Any]:
        with self._lock:
            db = self._dbs.pop(name, None)
        if db is None:
            raise not_found_database(name)
        return db.body

    def create_index(self, db_name: str, group: str, index: dict[str, Any]) -> dict[str, Any]:
        db = self.database(db_name)
        fields = index.get("fields") or []
        if len([f for f in fields if f.get("fieldPath") != "__name__"]) < 2 and not any(
                "arrayConfig" in f for f in fields):
            raise GoogleError("INVALID_ARGUMENT", "index.fields: this index is not necessary, configure using single "
                              "field index controls")
        with self._lock:
            for existing in db.indexes.values():
                if existing["fields"] == fields and existing["queryScope"] == (index.get("queryScope") or "COLLECTION") \
                        and existing["name"].split("/")[-3] == group:
                    raise GoogleError("ALREADY_EXISTS", "Index already exists")
            name = f"{db_name}/collectionGroups/{group}/indexes/{secrets.token_hex(6)}"
            out = {**index, "name": name, "queryScope": index.get("queryScope") or "COLLECTION", "fields": fields,
                   "state": "READY", "apiScope": index.get("apiScope") or "ANY_API"}
            db.indexes[name] = out
        return out

    def indexes(self, db_name: str, group: str) -> list[dict[str, Any]]:
        db = self.database(db_name)
        with self._lock:
            return [i for n, i in sorted(db.indexes.items()) if group in ("-", n.split("/")[-3])]

    def index(self, name: str) -> dict[str, Any]:
        db = self.database(name.split("/collectionGroups/")[0])
        with self._lock:
            found = db.indexes.get(name)
        if found is None:
            raise GoogleError("NOT_FOUND", f"Index not found: {name}")
        return found

    def delete_index(self, name: str) -> None:
        db = self.database(name.split("/collectionGroups/")[0])
        with self._lock:
            if db.indexes.pop(name, None) is None:
                raise GoogleError("NOT_FOUND", f"Index not found: {name}")

    def update_field(self, name: str, body: dict[str, Any], mask: list[str] | None) -> dict[str, Any]:
        db = self.database(name.split("/collectionGroups/")[0])
        with self._lock:
            current = db.fields.get(name, {"name": name})
            for key in (mask or [k for k in body if k != "name"]):
                top = key.split(".")[0]
                if top in body:
                    current[top] = body[top]
                else:
                    current.pop(top, None)
            if "ttlConfig" in current:
                current["ttlConfig"] = {**current["ttlConfig"], "state": "ACTIVE"}
            db.fields[name] = current
            return current

    def get_field_config(self, name: str) -> dict[str, Any]:
        db = self.database(name.split("/collectionGroups/")[0])
        with self._lock:
            return db.fields.get(name, {"name": name, "indexConfig": {"usesAncestorConfig": True}})

    # --- data plane ---------------------------------------------------------------------------------

    def _db_for(self, name: str) -> Database:
        """The database a document or parent path belongs to (`projects/P/databases/D/documents/...`)."""
        parts = name.split("/")
        if len(parts) < 5 or parts[0] != "projects" or parts[2] != "databases" or parts[4] != "documents":
            raise GoogleError("INVALID_ARGUMENT", f"invalid resource name {name!r}")
        db = self.database("/".join(parts[:4]))
        if db.body.get("type") == "DATASTORE_MODE":
            raise GoogleError("FAILED_PRECONDITION", "The Cloud Firestore API is not available for Firestore in "
                              "Datastore Mode database " + "/".join(parts[:4]))
        return db

    def check_database(self, database: str) -> None:
        self._db_for(database.rstrip("/") + "/documents")

    def begin_transaction(self, database: str) -> bytes:
        self.check_database(database)
        tid = secrets.token_bytes(16)
        with self._lock:
            self._transactions.add(tid)
        return tid

    def end_transaction(self, tid: bytes) -> None:
        with self._lock:
            if tid not in self._transactions:
                raise GoogleError("INVALID_ARGUMENT", "Transaction is invalid or has expired.")
            self._transactions.discard(tid)

    def commit(self, writes: list[Any], transaction: bytes = b"") -> tuple[list[tuple[Any, list[Value]]], Any]:
        """Apply `writes` (google.firestore.v1.Write protobufs) atomically; (update time and transform
        results per write, commit time)."""
        if transaction:
            self.end_transaction(transaction)
        commit_time = now_pb()
        with self._lock:
            staged: dict[str, DocumentPb | None] = {}
            results: list[tuple[Any, list[Value]]] = []
            for w in writes:
                op = w.WhichOneof("operation")
                name = w.update.name if op == "update" else w.delete if op == "delete" else w.transform.document
                db = self._db_for(name)
                current = staged[name] if name in staged else db.documents.get(name)
                self._check_precondition(w, name, current)
                if op == "delete":
                    staged[name] = None
                    results.append((commit_time, []))
                    continue
                doc = document_types.Document.pb()()
                if current is not None:
                    doc.CopyFrom(current)
                else:
                    doc.name = name
                    doc.create_time.CopyFrom(commit_time)
                if op == "update":
                    if w.HasField("update_mask"):
                        for path in w.update_mask.field_paths:
                            set_field(doc.fields, path, get_field(w.update.fields, path))
                    else:
                        doc.ClearField("fields")
                        for k, v in w.update.fields.items():
                            doc.fields[k].CopyFrom(v)
                transforms = list(w.update_transforms) if op == "update" else list(w.transform.field_transforms)
                transform_results = [self._transform(doc, t, commit_time) for t in transforms]
                if doc.ByteSize() > MAX_DOCUMENT_BYTES:
                    raise GoogleError("INVALID_ARGUMENT", f"Document {name} cannot be written because its size "
                                      f"({doc.ByteSize()} bytes) exceeds the maximum allowed size of 1,048,576 bytes.")
                doc.update_time.CopyFrom(commit_time)
                staged[name] = doc
                results.append((commit_time, transform_results))
            for name, staged_doc in staged.items():
                db = self._db_for(name)
                if staged_doc is None:
                    db.documents.pop(name, None)
                else:
                    db.documents[name] = staged_doc
        return results, commit_time

    @staticmethod
    def _check_precondition(w: Any, name: str, current: DocumentPb | None) -> None:
        if not w.HasField("current_document"):
            return
        pre = w.current_document
        if pre.HasField("exists"):
            if pre.exists and current is None:
                raise GoogleError("NOT_FOUND", f"No document to update: {name}")
            if not pre.exists and current is not None:
                raise GoogleError("ALREADY_EXISTS", f"Document already exists: {name}")
        elif pre.HasField("update_time") and (current is None or current.update_time != pre.update_time):
            raise GoogleError("FAILED_PRECONDITION", f"The update_time precondition failed for {name}")

    @staticmethod
    def _transform(doc: DocumentPb, t: Any, commit_time: Any) -> Value:
        from google.cloud.firestore_v1.types import document as d

        kind = t.WhichOneof("transform_type")
        current: Any = get_field(doc.fields, t.field_path)
        result = d.Value.pb()()
        if kind == "set_to_server_value":
            result.timestamp_value.CopyFrom(commit_time)
        elif kind in ("increment", "maximum", "minimum"):
            operand = getattr(t, kind)
            numeric = current is not None and current.WhichOneof("value_type") in ("integer_value", "double_value")
            if kind == "increment":
                if not numeric:
                    result.CopyFrom(operand)
                elif current.WhichOneof("value_type") == "integer_value" and operand.WhichOneof(
                        "value_type") == "integer_value":
                    result.integer_value = current.integer_value + operand.integer_value
                else:
                    a = current.integer_value if current.WhichOneof("value_type") == "integer_value" else \
                        current.double_value
                    b = operand.integer_value if operand.WhichOneof("value_type") == "integer_value" else \
                        operand.double_value
                    result.double_value = float(a) + float(b)
            else:
                pick_operand = not numeric or (value_key(operand) > value_key(current) if kind == "maximum"
                                               else value_key(operand) < value_key(current))
                result.CopyFrom(operand if pick_operand else current)
        elif kind in ("append_missing_elements", "remove_all_from_array"):
            existing = list(current.array_value.values) if current is not None and current.WhichOneof(
                "value_type") == "array_value" else []
            given = list(getattr(t, kind).values)
            if kind == "append_missing_elements":
                for v in given:
                    if not any(values_equal(v, e) for e in existing):
                        existing.append(v)
            else:
                existing = [e for e in existing if not any(values_equal(e, v) for v in given)]
            result.array_value.SetInParent()
            result.array_value.values.extend(existing)
        else:
            raise GoogleError("INVALID_ARGUMENT", f"unsupported field transform {kind}")
        set_field(doc.fields, t.field_path, result)
        return result if kind != "set_to_server_value" else d.Value.pb()()

    def get_documents(self, names: list[str]) -> list[tuple[str, DocumentPb | None]]:
        with self._lock:
            return [(n, self._db_for(n).documents.get(n)) for n in names]

    def list_documents(self, parent: str, collection: str) -> list[DocumentPb]:
        db = self._db_for(parent)
        prefix = f"{parent}/{collection}/"
        with self._lock:
            return [d for n, d in sorted(db.documents.items()) if n.startswith(prefix) and "/" not in n[len(prefix):]]

    def run_query(self, parent: str, q: Any) -> list[DocumentPb]:
        """Evaluate a StructuredQuery (protobuf) under `parent`."""
        db = self._db_for(parent)
        selectors = q.from_  # proto-plus names the `from` field `from_`
        if len(selectors) != 1:
            raise GoogleError("INVALID_ARGUMENT", "structured_query.from: exactly one collection is supported")
        selector = selectors[0]
        cid, descendants = selector.collection_id, selector.all_descendants
        with self._lock:
            docs = list(db.documents.values())
            indexes = list(db.indexes.values())
        prefix = parent + "/"
        candidates = []
        for doc in docs:
            if not doc.name.startswith(prefix):
                continue
            rest = doc.name[len(prefix):].split("/")
            if len(rest) % 2:
                continue
            if (descendants and rest[-2] == cid) or (not descendants and len(rest) == 2 and rest[0] == cid):
                candidates.append(doc)
        equality, inequality = self._filter_fields(q.where) if q.HasField("where") else ([], [])
        orders = [(o.field.field_path, o.direction) for o in q.order_by]
        for path in inequality:
            if path not in [p for p, _ in orders]:
                orders.append((path, query_types.StructuredQuery.Direction.ASCENDING))
        self._require_index(cid, descendants, equality, orders, indexes)
        last_dir = orders[-1][1] if orders else query_types.StructuredQuery.Direction.ASCENDING
        if "__name__" not in [p for p, _ in orders]:
            orders.append(("__name__", last_dir))
        hits = [d for d in candidates if (not q.HasField("where") or self._matches(d, q.where))
                and all(p == "__name__" or get_field(d.fields, p) is not None for p, _ in orders)]

        def order_values(d: DocumentPb) -> list[Value]:
            from google.cloud.firestore_v1.types import document as dt

            out = []
            for p, _ in orders:
                if p == "__name__":
                    v = dt.Value.pb()()
                    v.reference_value = d.name
                    out.append(v)
                else:
                    out.append(get_field(d.fields, p))
            return out

        def sort_key(d: DocumentPb) -> tuple[Any, ...]:
            descending = query_types.StructuredQuery.Direction.DESCENDING
            return tuple(_Directed(value_key(v), direction == descending)
                         for v, (_, direction) in zip(order_values(d), orders, strict=True))

        hits.sort(key=sort_key)
        if q.HasField("start_at"):
            hits = [d for d in hits if self._after_cursor(sort_key(d), q.start_at, orders, start=True)]
        if q.HasField("end_at"):
            hits = [d for d in hits if self._after_cursor(sort_key(d), q.end_at, orders, start=False)]
        hits = hits[q.offset:]
        if q.HasField("limit"):
            hits = hits[: q.limit.value]
        if q.HasField("select") and q.select.fields:
            projected = []
            for d in hits:
                p = document_types.Document.pb()()
                p.name = d.name
                p.create_time.CopyFrom(d.create_time)
                p.update_time.CopyFrom(d.update_time)
                for ref in q.select.fields:
                    if ref.field_path != "__name__":
                        set_field(p.fields, ref.field_path, get_field(d.fields, ref.field_path))
                projected.append(p)
            hits = projected
        return hits

    @staticmethod
    def _after_cursor(key: tuple[Any, ...], cursor: Any, orders: list[tuple[str, Any]], start: bool) -> bool:
        values = list(cursor.values)
        if not values:
            return True
        ck = []
        for v, (_, direction) in zip(values, orders, strict=False):
            ck.append(_Directed(value_key(v), direction == query_types.StructuredQuery.Direction.DESCENDING))
        prefix = key[: len(ck)]
        if start:  # start_at (before=True) is inclusive, start_after (before=False) exclusive
            return prefix >= tuple(ck) if cursor.before else prefix > tuple(ck)
        # end_before (before=True) is exclusive, end_at (before=False) inclusive
        return prefix < tuple(ck) if cursor.before else prefix <= tuple(ck)

    def _filter_fields(self, f: Any) -> tuple[list[str], list[str]]:
        kind = f.WhichOneof("filter_type")
        if kind == "composite_filter":
            eq: list[str] = []
            ineq: list[str] = []
            for sub in f.composite_filter.filters:
                e, i = self._filter_fields(sub)
                eq += e
                ineq += i
            return eq, ineq
        if kind == "field_filter":
            path = f.field_filter.field.field_path
            return ([], [path]) if f.field_filter.op in INEQUALITIES else ([path], [])
        return [f.unary_filter.field.field_path], []

    @staticmethod
    def _require_index(cid: str, descendants: bool, equality: list[str], orders: list[tuple[str, Any]],
                       indexes: list[dict[str, Any]]) -> None:
        order_fields = [p for p, _ in orders if p != "__name__"]
        eq = [p for p in dict.fromkeys(equality) if p not in order_fields]
        if not order_fields or (not eq and len(order_fields) == 1):
            return  # single-field indexes (automatic) serve it; equality-only queries merge them
        scope = "COLLECTION_GROUP" if descendants else "COLLECTION"
        direction_name = {1: "ASCENDING", 2: "DESCENDING"}
        wanted_orders = [(p, direction_name.get(int(d), "ASCENDING")) for p, d in orders if p != "__name__"]
        flipped = [(p, "DESCENDING" if d == "ASCENDING" else "ASCENDING") for p, d in wanted_orders]
        for index in indexes:
            if index["name"].split("/")[-3] != cid or index.get("queryScope", "COLLECTION") != scope:
                continue
            fields = [(f["fieldPath"], f.get("order")) for f in index["fields"] if f["fieldPath"] != "__name__"]
            head, tail = fields[: len(eq)], fields[len(eq):]
            if {p for p, _ in head} == set(eq) and tail in (wanted_orders, flipped):
                return
        spec = ", ".join([f"{p} ASCENDING" for p in eq] + [f"{p} {d}" for p, d in wanted_orders])
        raise GoogleError("FAILED_PRECONDITION", f"The query requires an index. Create a composite index on "
                          f"collection group {cid!r} ({scope}) with fields: {spec}. You can create it with the "
                          "Firestore Admin API (collectionGroups/*/indexes).")

    def _matches(self, doc: DocumentPb, f: Any) -> bool:
        kind = f.WhichOneof("filter_type")
        if kind == "composite_filter":
            results = (self._matches(doc, sub) for sub in f.composite_filter.filters)
            return any(results) if f.composite_filter.op == 2 else all(results)
        if kind == "unary_filter":
            v = get_field(doc.fields, f.unary_filter.field.field_path)
            op = f.unary_filter.op
            if v is None:
                return False
            is_nan = v.WhichOneof("value_type") == "double_value" and math.isnan(v.double_value)
            is_null = v.WhichOneof("value_type") == "null_value"
            return {UnaryOp.IS_NAN: is_nan, UnaryOp.IS_NULL: is_null,
                    UnaryOp.IS_NOT_NAN: not is_nan and not is_null, UnaryOp.IS_NOT_NULL: not is_null}.get(op, False)
        ff = f.field_filter
        v = get_field(doc.fields, ff.field.field_path) if ff.field.field_path != "__name__" else None
        if ff.field.field_path == "__name__":
            from google.cloud.firestore_v1.types import document as dt

            v = dt.Value.pb()()
            v.reference_value = doc.name
        if v is None:
            return False
        op, target = ff.op, ff.value
        if op in (FieldOp.IN, FieldOp.NOT_IN, FieldOp.ARRAY_CONTAINS_ANY):
            options = list(target.array_value.values)
            if op == FieldOp.IN:
                return any(values_equal(v, o) for o in options)
            if op == FieldOp.NOT_IN:
                return v.WhichOneof("value_type") != "null_value" and not any(values_equal(v, o) for o in options)
            items = list(v.array_value.values) if v.WhichOneof("value_type") == "array_value" else []
            return any(values_equal(i, o) for i in items for o in options)
        if op == FieldOp.ARRAY_CONTAINS:
            items = list(v.array_value.values) if v.WhichOneof("value_type") == "array_value" else []
            return any(values_equal(i, target) for i in items)
        if op == FieldOp.EQUAL:
            return values_equal(v, target)
        if op == FieldOp.NOT_EQUAL:
            return v.WhichOneof("value_type") != "null_value" and not values_equal(v, target)
        a, b = value_key(v), value_key(target)
        if a[0] != b[0]:
            return False  # range filters compare within one type only
        return {FieldOp.LESS_THAN: a < b, FieldOp.LESS_THAN_OR_EQUAL: a <= b, FieldOp.GREATER_THAN: a > b,
                FieldOp.GREATER_THAN_OR_EQUAL: a >= b}.get(op, False)

    # --- sandbox ------------------------------------------------------------------------------------

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            out = [{"type": "firestore.database", "name": n, "documents": str(len(d.documents))}
                   for n, d in sorted(self._dbs.items())]
            out += [{"type": "firestore.index", "name": n} for d in self._dbs.values() for n in sorted(d.indexes)]
        return out

    def reset(self) -> None:
        with self._lock:
            self._dbs.clear()
            self._transactions.clear()


class _Directed:
    """A sort key that sorts descending when `desc`."""

    __slots__ = ("key", "desc")

    def __init__(self, key: tuple[Any, ...], desc: bool) -> None:
        self.key, self.desc = key, desc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Directed) and self.key == other.key

    def __lt__(self, other: _Directed) -> bool:
        return self.key > other.key if self.desc else self.key < other.key

    def __le__(self, other: _Directed) -> bool:
        return self == other or self < other

    def __gt__(self, other: _Directed) -> bool:
        return not self <= other

    def __ge__(self, other: _Directed) -> bool:
        return not self < other

    def __hash__(self) -> int:
        return hash(self.key)
