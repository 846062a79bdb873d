"""State of the sandbox's Cosmos DB accounts: databases, containers, items, and the master-key check.

ARM creates accounts, SQL databases and containers; the hooks here (`on_put` / `on_delete`) make
them exist in the data plane and set the account's `properties.documentEndpoint` to
`https://127.0.0.1:PORT/cosmos/<account>/`. The keys are ARM's (what `listKeys` answers), read at
request time, so a regenerated key takes effect at once. Methods raise `CosmosError`, which
carries the service's status, sub-status and error code.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

from sandbox.core.context import SandboxContext

ACCOUNT_TYPE = "Microsoft.DocumentDB/databaseAccounts"
DATABASE_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases"
CONTAINER_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
URL_PREFIX = "/cosmos"

WRITE_KEYS = ("primaryMasterKey", "secondaryMasterKey")
READ_KEYS = ("primaryReadonlyMasterKey", "secondaryReadonlyMasterKey")
# Cosmos DB refuses requests whose x-ms-date is further than this from its clock.
MAX_CLOCK_SKEW_SECONDS = 15 * 60
MAX_ITEM_BYTES = 2 * 1024 * 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
PKRANGE_ID = "0"


class CosmosError(Exception):
    """A Cosmos DB data-plane error: `{"code", "message"}` with an HTTP status and `x-ms-substatus`."""

    def __init__(self, status: int, code: str, message: str, substatus: int = 0, extra: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.substatus = substatus
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def not_found(what: str) -> CosmosError:
    return CosmosError(
        404,
        "NotFound",
        f'Message: {{"Errors":["Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found"]}} ({what})',
    )


def _rid(seed: str, length: int = 8) -> str:
    # Cosmos resource ids are short base64 strings; derived from a seed so they stay stable.
    return base64.b64encode(hashlib.sha256(seed.encode()).digest()[:length]).decode().replace("/", "-")


def _etag() -> str:
    return f'"{uuid.uuid4()}"'


def partition_key_json(value: Any) -> str:
    """The canonical form of a partition key value, as the `x-ms-documentdb-partitionkey` header
    carries it (a JSON array of one value; `{}` stands for an undefined key)."""
    return json.dumps([value], separators=(",", ":"), sort_keys=True)


UNDEFINED_PK = "[{}]"


@dataclass
class Container:
    id: str
    rid: str
    partition_paths: list[str]
    partition_kind: str
    default_ttl: int | None
    indexing_policy: dict[str, Any]
    etag: str = field(default_factory=_etag)
    ts: int = field(default_factory=lambda: int(time.time()))
    # (partition key json, id) -> stored item with its system properties
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lsn: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def body(self, db_rid: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "indexingPolicy": copy.deepcopy(self.indexing_policy),
            "partitionKey": {"paths": list(self.partition_paths), "kind": self.partition_kind, "version": 2},
            "conflictResolutionPolicy": {
                "mode": "LastWriterWins",
                "conflictResolutionPath": "/_ts",
                "conflictResolutionProcedure": "",
            },
            "geospatialConfig": {"type": "Geography"},
            "_rid": self.rid,
            "_ts": self.ts,
            "_self": f"dbs/{db_rid}/colls/{self.rid}/",
            "_etag": self.etag,
            "_docs": "docs/",
            "_sprocs": "sprocs/",
            "_triggers": "triggers/",
            "_udfs": "udfs/",
            "_conflicts": "conflicts/",
        }
        if self.default_ttl is not None:
            out["defaultTtl"] = self.default_ttl
        return out

    # --- items ---------------------------------------------------------------------------------

    def partition_key_of(self, doc: dict[str, Any]) -> str:
        """The canonical partition key of a document, from the container's partition key path."""
        value: Any = doc
        for part in self.partition_paths[0].strip("/").split("/"):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return UNDEFINED_PK
        return partition_key_json(value)

    def _expired(self, item: dict[str, Any], now: float) -> bool:
        ttl = item.get("ttl", self.default_ttl)
        if self.default_ttl is None or not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            return False
        return item["_ts"] + ttl <= now

    def live_items(self, pk: str | None) -> list[dict[str, Any]]:
        """Items of one logical partition (or all), oldest write first, without expired ones."""
        now = time.time()
        with self.lock:
            return [
                copy.deepcopy(d)
                for (k, _), d in self.items.items()
                if (pk is None or k == pk) and not self._expired(d, now)
            ]

    def get_item(self, pk: str, item_id: str) -> dict[str, Any] | None:
        with self.lock:
            item = self.items.get((pk, item_id))
            if item is None or self._expired(item, time.time()):
                return None
            return copy.deepcopy(item)

    def write_item(
        self,
        db_rid: str,
        doc: Any,
        header_pk: str | None,
        mode: str,
        item_id: str | None = None,
        if_match: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create, upsert or replace one item; returns (stored item, created)."""
        if not isinstance(doc, dict):
            raise CosmosError(400, "BadRequest", "The request body must be a JSON object (the item).")
        doc_id = doc.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise CosmosError(400, "BadRequest", "The input content is invalid because the required properties - 'id; ' - are missing")
        if any(c in doc_id for c in "/\\?#"):
            raise CosmosError(400, "BadRequest", f"The item id {doc_id!r} contains a character not allowed in ids: / \\ ? #.")
        if item_id is not None and doc_id != item_id:
            raise CosmosError(400, "BadRequest", f"The id in the body ({doc_id!r}) differs from the id in the URL ({item_id!r}).")
        if len(json.dumps(doc).encode()) > MAX_ITEM_BYTES:
            raise CosmosError(413, "RequestEntityTooLarge", "Request size is too large: an item is at most 2 MB.")
        pk = self.partition_key_of(doc)
        if header_pk is None:
            raise CosmosError(
                400,
                "BadRequest",
                "PartitionKey value must be supplied for this operation (x-ms-documentdb-partitionkey header).",
            )
        if header_pk != pk:
            raise CosmosError(
                400,
                "BadRequest",
                "PartitionKey extracted from document doesn't match the one specified in the header. "
                f"Learn more: https://aka.ms/CosmosDB/sql/errors/wrong-pk-value (document: {pk}, header: {header_pk})",
                substatus=1001,
            )
        with self.lock:
            key = (pk, doc_id)
            existing = self.items.get(key)
            if existing is not None and self._expired(existing, time.time()):
                del self.items[key]
                existing = None
            if mode == "create" and existing is not None:
                raise CosmosError(
                    409, "Conflict", "Entity with the specified id already exists in the system."
                )
            if mode == "replace" and existing is None:
                raise not_found(f"item {doc_id!r}")
            if if_match and existing is not None and if_match.strip() not in ("*", existing["_etag"]):
                raise CosmosError(
                    412,
                    "PreconditionFailed",
                    "Operation cannot be performed because one of the specified precondition is not met.",
                )
            if if_match and existing is None and mode == "upsert" and if_match.strip() != "*":
                raise not_found(f"item {doc_id!r}")
            self.lsn += 1
            doc_rid = existing["_rid"] if existing else _rid(f"{self.rid}/{pk}/{doc_id}/{uuid.uuid4()}")
            stored = {k: v for k, v in doc.items() if k not in ("_rid", "_self", "_etag", "_attachments", "_ts")}
            stored.update(
                {
                    "_rid": doc_rid,
                    "_self": f"dbs/{db_rid}/colls/{self.rid}/docs/{doc_rid}/",
                    "_etag": _etag(),
                    "_attachments": "attachments/",
                    "_ts": int(time.time()),
                }
            )
            self.items[key] = stored
            return copy.deepcopy(stored), existing is None

    def delete_item(self, pk: str, item_id: str, if_match: str | None) -> None:
        with self.lock:
            existing = self.items.get((pk, item_id))
            if existing is None or self._expired(existing, time.time()):
                self.items.pop((pk, item_id), None)
                raise not_found(f"item {item_id!r}")
            if if_match and if_match.strip() not in ("*", existing["_etag"]):
                raise CosmosError(
                    412,
                    "PreconditionFailed",
                    "Operation cannot be performed because one of the specified precondition is not met.",
                )
            self.lsn += 1
            del self.items[(pk, item_id)]


@dataclass
class Database:
    id: str
    rid: str
    etag: str = field(default_factory=_etag)
    ts: int = field(default_factory=lambda: int(time.time()))
    containers: dict[str, Container] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "_rid": self.rid,
            "_self": f"dbs/{self.rid}/",
            "_etag": self.etag,
            "_colls": "colls/",
            "_users": "users/",
            "_ts": self.ts,
        }


@dataclass
class Account:
    name: str
    resource_id: str
    location: str
    databases: dict[str, Database] = field(default_factory=dict)


def _split_id(resource_id: str) -> tuple[str, list[str]]:
    """(account resource id, [database, container]) of a Cosmos ARM resource id."""
    parts = resource_id.rstrip("/").split("/")
    lower = [p.lower() for p in parts]
    i = lower.index("databaseaccounts")
    account_id = "/".join(parts[: i + 2])
    names = [parts[j + 1] for j in range(i + 2, len(parts) - 1, 2)]
    return account_id, names


class _Hooks:
    """ARM hooks for one Cosmos resource type, forwarding to the backend."""

    def __init__(self, owner: CosmosBackend, kind: str) -> None:
        self.owner = owner
        self.kind = kind

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        self.owner.on_put(self.kind, resource_id, resource)

    def on_delete(self, resource_id: str) -> None:
        self.owner.on_delete(self.kind, resource_id)


class CosmosBackend:
    """Every Cosmos DB account of one sandbox."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}  # lower-case account name -> account
        self.account_hooks = _Hooks(self, "account")
        self.database_hooks = _Hooks(self, "database")
        self.container_hooks = _Hooks(self, "container")

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()

    def endpoint(self, account_name: str) -> str:
        return f"{self.ctx.azure_base_url}{URL_PREFIX}/{account_name}/"

    # --- ARM hooks -------------------------------------------------------------------------------

    def on_put(self, kind: str, resource_id: str, resource: dict[str, Any]) -> None:
        account_id, names = _split_id(resource_id)
        account_name = account_id.rsplit("/", 1)[-1]
        with self.lock:
            account = self.accounts.get(account_name.lower())
            if kind == "account":
                location = str(resource.get("location") or "westeurope")
                if account is None or account.resource_id.lower() != account_id.lower():
                    account = Account(account_name, account_id, location)
                    self.accounts[account_name.lower()] = account
                self._set_endpoints(account, resource)
                return
            if account is None:
                return  # ARM checks parents first; nothing to attach to otherwise
            props = resource.get("properties")
            spec: dict[str, Any] = {}
            if isinstance(props, dict) and isinstance(props.get("resource"), dict):
                spec = props["resource"]
            db_name = names[0]
            if kind == "database":
                if db_name not in account.databases:
                    account.databases[db_name] = Database(db_name, _rid(f"{account_id}/{db_name}/{uuid.uuid4()}", 4))
                return
            db = account.databases.get(db_name)
            if db is None:
                db = account.databases[db_name] = Database(db_name, _rid(f"{account_id}/{db_name}/{uuid.uuid4()}", 4))
            coll_name = names[1]
            pk: dict[str, Any] = spec["partitionKey"] if isinstance(spec.get("partitionKey"), dict) else {}
            paths = [str(p) for p in pk.get("paths") or ["/id"]]
            ttl = spec.get("defaultTtl")
            ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None
            indexing = spec.get("indexingPolicy") if isinstance(spec.get("indexingPolicy"), dict) else None
            existing = db.containers.get(coll_name)
            if existing is None:
                db.containers[coll_name] = Container(
                    coll_name,
                    _rid(f"{db.rid}/{coll_name}/{uuid.uuid4()}"),
                    paths,
                    str(pk.get("kind") or "Hash"),
                    ttl,
                    indexing or _default_indexing(),
                )
            else:
                # The partition key of a container cannot change; TTL and indexing can.
                existing.default_ttl = ttl
                if indexing is not None:
                    existing.indexing_policy = indexing
                existing.etag = _etag()

    def _set_endpoints(self, account: Account, resource: dict[str, Any]) -> None:
        props = resource.setdefault("properties", {})
        endpoint = self.endpoint(account.name)
        props["documentEndpoint"] = endpoint
        locations = props.get("locations") if isinstance(props.get("locations"), list) else []
        described = []
        for i, loc in enumerate(locations or [{"locationName": account.location, "failoverPriority": 0}]):
            if not isinstance(loc, dict):
                continue
            name = str(loc.get("locationName") or account.location)
            entry = {
                "id": f"{account.name}-{name.replace(' ', '').lower()}",
                "locationName": name,
                "documentEndpoint": endpoint,
                "provisioningState": "Succeeded",
                "failoverPriority": int(loc.get("failoverPriority", i) or 0),
                "isZoneRedundant": bool(loc.get("isZoneRedundant", False)),
            }
            described.append(entry)
        props["locations"] = described
        props["readLocations"] = copy.deepcopy(described)
        props["writeLocations"] = copy.deepcopy(described[:1])

    def on_delete(self, kind: str, resource_id: str) -> None:
        account_id, names = _split_id(resource_id)
        account_name = account_id.rsplit("/", 1)[-1].lower()
        with self.lock:
            account = self.accounts.get(account_name)
            if account is None or account.resource_id.lower() != account_id.lower():
                return
            if kind == "account":
                del self.accounts[account_name]
            elif kind == "database":
                account.databases.pop(names[0], None)
            else:
                db = account.databases.get(names[0])
                if db is not None:
                    db.containers.pop(names[1], None)

    # --- lookups ---------------------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        with self.lock:
            return self.accounts.get(name.lower())

    def database(self, account: Account, db: str) -> Database:
        with self.lock:
            found = account.databases.get(db)
        if found is None:
            raise not_found(f"database {db!r}")
        return found

    def container(self, account: Account, db: str, coll: str) -> tuple[Database, Container]:
        database = self.database(account, db)
        with self.lock:
            found = database.containers.get(coll)
        if found is None:
            raise not_found(f"container {db}/{coll}")
        return database, found

    def keys(self, account: Account) -> dict[str, str]:
        """The account's keys as ARM holds them (empty when ARM has no record)."""
        try:
            from sandbox.arm.models import arm_backend
        except ImportError:
            return {}
        res = arm_backend(self.ctx).resources.get(account.resource_id.lower())
        if res is None:
            return {}
        return {k: v for k, v in res.secrets.items() if k in WRITE_KEYS + READ_KEYS}


def _default_indexing() -> dict[str, Any]:
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": '/"_etag"/?'}],
    }


# --- master-key authorization --------------------------------------------------------------------


def string_to_sign(verb: str, resource_type: str, resource_link: str, x_date: str) -> str:
    return f"{verb.lower()}\n{resource_type.lower()}\n{resource_link}\n{x_date.lower()}\n\n"


def sign(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()).decode()


def check_authorization(
    header: str | None,
    x_date: str | None,
    verb: str,
    resource_type: str,
    resource_link: str,
    keys: dict[str, str],
    read_only: bool,
) -> str:
    """Verify a master-key `authorization` header; returns the name of the key that signed it.

    Raises 401 `Unauthorized` as Cosmos DB does (the payload that should have been signed is
    named, never a key)."""
    if not header:
        raise CosmosError(401, "Unauthorized", "Required Header authorization is missing. Ensure a valid Authorization token is passed.")
    if not x_date:
        raise CosmosError(401, "Unauthorized", "Required Header x-ms-date is missing. Ensure a valid x-ms-date header is passed.")
    try:
        sent = parsedate_to_datetime(x_date).timestamp()
    except (TypeError, ValueError) as exc:
        raise CosmosError(401, "Unauthorized", f"The x-ms-date header '{x_date}' is not an RFC 1123 date.") from exc
    if abs(time.time() - sent) > MAX_CLOCK_SKEW_SECONDS:
        raise CosmosError(
            401,
            "Unauthorized",
            f"The authorization token is not valid at the current time. Please create another token and retry "
            f"(token start time: {x_date}, current time: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}).",
        )
    fields = dict(part.partition("=")[::2] for part in unquote(header).split("&"))
    if fields.get("type") != "master" or fields.get("ver") != "1.0" or not fields.get("sig"):
        raise CosmosError(
            401, "Unauthorized", "The authorization header is not a master-key token (type=master&ver=1.0&sig=...)."
        )
    text = string_to_sign(verb, resource_type, resource_link, x_date)
    # Read-only keys sign reads and queries; writes need a master key.
    allowed = WRITE_KEYS + (READ_KEYS if read_only else ())
    for name in allowed:
        key = keys.get(name)
        if key and hmac.compare_digest(sign(key, text), fields["sig"]):
            return name
    payload = text.replace("\n", "\\n")
    raise CosmosError(
        401,
        "Unauthorized",
        "The input authorization token can't serve the request. The wrong key is being used or the expected "
        "payload is not built as per the protocol. For more info: https://aka.ms/cosmosdb-tsg-mac-signature. "
        f"Server used the following payload to sign: '{payload}'",
    )
