"""Twin writes: per-twin group commit (pure, `payload_functions.common.twin_writes`), the timed
patch (`common.adt.build_timed_patch`), and `TwinPatcher` through the real azure-digitaltwins-core
client and ManagedIdentityCredential against the sandbox's Digital Twins: bursts coalesce, stay
under 10 writes/s per twin, and the newest reading wins whatever the arrival order."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from payload_helpers import ThreadedServer

from payload_functions.azure.digitaltwins import ADT_READS, PatchOutcome, TwinPatcher, outcome_for
from payload_functions.common.adt import TimedPatch, build_timed_patch
from payload_functions.common.errors import BadRequest, UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.common.twin_writes import (
    Stamped,
    TwinWriteCoalescer,
    WriteTimeout,
    instant,
    is_newer,
    merge,
)
from payload_functions.core.receivers import adt_push_body
from shared.contracts import Setting

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def stamp(ms: int) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


# -- pure: ordering and merging ------------------------------------------------------------------


def test_instants_compare_across_formats_and_unreadable_ones_lose() -> None:
    assert instant("2021-11-30T18:47:53.7648958Z") == instant("2021-11-30T19:47:53.764895+01:00")
    assert instant("2025-01-31T12:00:00") == instant("2025-01-31T12:00:00Z")  # naive is UTC
    assert instant("yesterday") is None and instant(None) is None and instant(5) is None
    assert is_newer(stamp(1), stamp(0)) and not is_newer(stamp(0), stamp(1))
    assert not is_newer(stamp(1), stamp(1)), "equal is not newer: a redelivered reading writes nothing"
    assert is_newer(stamp(0), None) and is_newer(stamp(0), "garbage")
    assert not is_newer("garbage", stamp(0)) and is_newer("garbage", None)
    # Text order would say otherwise: 7 fractional digits vs 3.
    assert is_newer("2025-01-31T12:00:00.100Z", "2025-01-31T12:00:00.0999999Z")


def test_merge_keeps_the_newest_value_per_property_and_later_arrival_on_ties() -> None:
    pending: dict[str, Stamped] = {}
    merge(pending, {"temperature": 2.0, "humidity": 20}, stamp(200))
    merge(pending, {"temperature": 1.0, "pressure": 5}, stamp(100))  # older temperature: ignored
    merge(pending, {"humidity": 30}, stamp(300))
    merge(pending, {"pressure": 6}, stamp(100))  # same time as the held one: the later arrival
    assert pending == {"temperature": Stamped(2.0, stamp(200)), "humidity": Stamped(30, stamp(300)),
                       "pressure": Stamped(6, stamp(100))}


def test_timed_patch_writes_only_newer_declared_properties_with_their_source_time() -> None:
    batch = {"temperature": Stamped(21.5, stamp(500)), "humidity": Stamped(40, stamp(500)),
             "pressure": Stamped(3, stamp(500)), "noise": Stamped(1, stamp(500))}
    metadata = {"$model": "dtmi:x;1",
                "lastTemperature": {"lastUpdateTime": "x", "sourceTime": stamp(400)},  # older: written
                "lastHumidity": {"lastUpdateTime": "x", "sourceTime": stamp(500)},  # same: kept
                "lastPressure": {"lastUpdateTime": "x"}}  # no sourceTime yet: written
    plan = build_timed_patch(batch, {"lastTemperature", "lastHumidity", "lastPressure"}, metadata)
    assert plan.ops == [
        {"op": "add", "path": "/lastPressure", "value": 3},
        {"op": "add", "path": "/$metadata/lastPressure/sourceTime", "value": stamp(500)},
        {"op": "add", "path": "/lastTemperature", "value": 21.5},
        {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": stamp(500)},
    ]
    assert plan.written == {"pressure": stamp(500), "temperature": stamp(500)}
    assert plan.kept == {"humidity": stamp(500)} and plan.skipped == ["noise"]
    assert build_timed_patch(batch, set(), {}).ops == []


def test_each_caller_gets_its_own_part_of_a_batch() -> None:
    batch = TimedPatch(written={"temperature": stamp(9), "humidity": stamp(5)}, kept={"pressure": stamp(7)},
                       skipped=["noise"])
    mine = outcome_for("s1", {"temperature": 1, "humidity": 2, "pressure": 3, "noise": 4}, stamp(5), batch)
    assert mine == PatchOutcome("s1", patched=["lastHumidity"], skipped=["noise"],
                                stale=["lastPressure", "lastTemperature"])


def test_the_pusher_body_carries_the_reading_time() -> None:
    body = {"device_id": "s1", "telemetry": {"temperature": 1}, "timestamp": "2025-01-31T13:00:00+01:00"}
    assert adt_push_body(body) == ("s1", {"temperature": 1}, "2025-01-31T12:00:00.000Z")
    assert adt_push_body({"device_id": "s1", "telemetry": {"temperature": 1}}) == ("s1", {"temperature": 1}, None)
    assert adt_push_body({"iotDeviceId": "s1", "time": 1738324800, "temperature": 2}) == (
        "s1", {"temperature": 2}, "2025-01-31T12:00:00.000Z")
    with pytest.raises(BadRequest, match=r"body\.payload\.timestamp: 'soon' is not ISO-8601"):
        adt_push_body({"device_id": "s1", "telemetry": {}, "timestamp": "soon"})


# -- pure: the group commit ------------------------------------------------------------------------


@dataclass
class Recorder:
    """A write function that records batches and can be held open."""

    batches: list[dict[str, Stamped]]
    starts: list[float]
    threads: list[str]
    gate: threading.Event
    fail_with: Exception | None = None
    hold_first_only: bool = True

    def __call__(self, batch: Mapping[str, Stamped], pace: Callable[[], None]) -> dict[str, Stamped]:
        pace()
        self.starts.append(time.monotonic())
        self.threads.append(threading.current_thread().name)
        self.batches.append(dict(batch))
        if not self.gate.is_set():
            self.gate.wait(10)
            if not self.hold_first_only:
                self.gate.clear()
        if self.fail_with is not None:
            raise self.fail_with
        return dict(batch)


def recorder(open_gate: bool = True) -> Recorder:
    gate = threading.Event()
    if open_gate:
        gate.set()
    return Recorder([], [], [], gate)


def test_callers_arriving_during_a_write_share_the_next_one_and_newest_wins() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000)
    write = recorder(open_gate=False)
    key = ("adt", "s1")
    results: dict[int, Any] = {}

    def call(i: int, values: dict[str, Any], ms: int) -> None:
        results[i] = coalescer.submit(key, values, stamp(ms), write)

    first = threading.Thread(target=call, args=(0, {"t": 0.0}, 0))
    first.start()
    wait_until(lambda: len(write.batches) == 1)  # the first caller writes, held open
    later = [threading.Thread(target=call, args=(i, {"t": float(i), f"p{i}": i}, ms))
             for i, ms in ((1, 300), (2, 100), (3, 200))]
    for t in later:
        t.start()
    wait_until(lambda: coalescer.waiting(key) == 3)
    write.gate.set()
    for t in (first, *later):
        t.join(10)
    assert [set(b) for b in write.batches] == [{"t"}, {"t", "p1", "p2", "p3"}]
    assert write.batches[1]["t"] == Stamped(1.0, stamp(300)), "the newest reading's value, whatever the order"
    assert results[0] == write.batches[0] and results[1] == results[2] == results[3] == write.batches[1]
    assert coalescer.waiting(key) == 0


def test_other_twins_are_not_held_up() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000)
    slow = recorder(open_gate=False)
    blocked = threading.Thread(target=coalescer.submit, args=(("adt", "a"), {"t": 1}, stamp(0), slow))
    blocked.start()
    wait_until(lambda: len(slow.batches) == 1)
    fast = recorder()
    assert coalescer.submit(("adt", "b"), {"t": 2}, stamp(0), fast) == {"t": Stamped(2, stamp(0))}
    slow.gate.set()
    blocked.join(10)


def test_a_failed_write_fails_every_caller_it_carried_and_the_next_one_works() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000)
    write = recorder(open_gate=False)
    write.hold_first_only = False
    key = ("adt", "s1")
    errors: list[str] = []

    def call(ms: int) -> None:
        try:
            coalescer.submit(key, {"t": ms}, stamp(ms), write)
        except UpstreamError as exc:
            errors.append(f"{ms}: {exc.message}")

    first = threading.Thread(target=call, args=(0,))
    first.start()
    wait_until(lambda: len(write.batches) == 1)
    write.fail_with = UpstreamError("Digital Twins answered 404 (DigitalTwinNotFound) for twin s1")
    rest = [threading.Thread(target=call, args=(ms,)) for ms in (1, 2, 3)]
    for t in rest:
        t.start()
    wait_until(lambda: coalescer.waiting(key) == 3)
    write.gate.set()  # the first write: fails (fail_with was set while it was held)
    wait_until(lambda: len(write.batches) == 2)
    write.gate.set()  # the second, carrying the three others: fails too
    for t in (first, *rest):
        t.join(10)
    assert sorted(errors) == [f"{ms}: Digital Twins answered 404 (DigitalTwinNotFound) for twin s1" for ms in range(4)]
    write.fail_with = None
    write.gate.set()
    assert coalescer.submit(key, {"t": 9}, stamp(9), write) == {"t": Stamped(9, stamp(9))}


def test_a_reading_without_values_still_gets_a_write_call_and_strands_nobody() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000, max_wait=5)
    write = recorder(open_gate=False)
    key = ("adt", "s1")
    first = threading.Thread(target=coalescer.submit, args=(key, {"t": 1}, stamp(1), write))
    first.start()
    wait_until(lambda: len(write.batches) == 1)
    results: list[Any] = []
    empty = threading.Thread(target=lambda: results.append(coalescer.submit(key, {}, stamp(2), write)))
    empty.start()
    wait_until(lambda: coalescer.waiting(key) == 1)
    write.gate.set()
    first.join(10)
    empty.join(10)
    assert results == [{}] and write.batches == [{"t": Stamped(1, stamp(1))}, {}]
    assert coalescer.submit(key, {}, stamp(3), write) == {}


class Abort(BaseException):
    """Like a KeyboardInterrupt in the writing thread."""


def test_a_writer_thread_dying_mid_write_hands_the_twin_on() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000, max_wait=5)
    key = ("adt", "s1")
    gate = threading.Event()
    calls: list[dict[str, Stamped]] = []

    def write(batch: Mapping[str, Stamped], pace: Callable[[], None]) -> dict[str, Stamped]:
        calls.append(dict(batch))
        if len(calls) == 1:  # the first writer dies mid-write
            gate.wait(10)
            raise Abort()
        return dict(batch)

    died: list[BaseException] = []

    def leader() -> None:
        try:
            coalescer.submit(key, {"t": 1}, stamp(1), write)
        except Abort as exc:
            died.append(exc)

    first = threading.Thread(target=leader)
    first.start()
    wait_until(lambda: len(calls) == 1)
    results: list[Any] = []
    second = threading.Thread(target=lambda: results.append(coalescer.submit(key, {"t": 2}, stamp(2), write)))
    second.start()
    wait_until(lambda: coalescer.waiting(key) == 1)
    gate.set()
    first.join(10)
    second.join(10)
    assert len(died) == 1 and results == [{"t": Stamped(2, stamp(2))}]


def test_writes_to_one_twin_are_paced_with_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    coalescer: TwinWriteCoalescer[float] = TwinWriteCoalescer(writes_per_second=8, clock=lambda: now[0], sleep=sleep)
    starts: list[float] = []

    def write(batch: Mapping[str, Stamped], pace: Callable[[], None]) -> float:
        pace()
        starts.append(now[0])
        now[0] += 0.01  # the call itself takes 10 ms
        return now[0]

    for i in range(5):
        coalescer.submit(("adt", "s1"), {"t": i}, stamp(i), write)
    assert starts == pytest.approx([100.0, 100.125, 100.25, 100.375, 100.5])
    assert slept == pytest.approx([0.115] * 4)
    coalescer.submit(("adt", "other"), {"t": 1}, stamp(1), write)  # another twin: no wait
    assert len(slept) == 4
    now[0] += 5  # long after: no wait either, and idle twins are forgotten
    coalescer.submit(("adt", "s1"), {"t": 9}, stamp(9), write)
    assert len(slept) == 4 and coalescer.tracked() == 1
    with pytest.raises(ValueError):
        TwinWriteCoalescer(writes_per_second=0)


def test_a_concurrent_burst_is_coalesced_paced_and_each_caller_writes_at_most_once() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=40)
    write = recorder()
    current = threading.local()
    writers: list[int] = []

    def write_noting_the_caller(batch: Mapping[str, Stamped], pace: Callable[[], None]) -> dict[str, Stamped]:
        writers.append(current.caller)
        return write(batch, pace)

    def call(i: int) -> dict[str, Stamped]:
        current.caller = i
        return coalescer.submit(("adt", "s1"), {"t": i}, stamp(i), write_noting_the_caller)

    n = 60
    order = list(range(n))
    random.Random(7).shuffle(order)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, order))
    assert 1 < len(write.batches) < n / 2, len(write.batches)
    gaps = [b - a for a, b in zip(write.starts, write.starts[1:], strict=False)]
    assert min(gaps) >= 1 / 40 - 0.01, gaps  # paced (unpaced gaps are near 0); margin for a busy machine
    assert len(writers) == len(set(writers)), "a caller wrote more than one batch"
    for i, result in zip(order, results, strict=True):  # each caller saw its value or a newer one written
        assert is_newer(result["t"].timestamp, stamp(i)) or result["t"].timestamp == stamp(i)
    assert n - 1 in {b["t"].value for b in write.batches}
    assert coalescer.waiting(("adt", "s1")) == 0


def test_a_caller_gives_up_after_max_wait_but_its_reading_is_still_written() -> None:
    coalescer: TwinWriteCoalescer[dict[str, Stamped]] = TwinWriteCoalescer(writes_per_second=1000, max_wait=0.2)
    write = recorder(open_gate=False)
    key = ("adt", "s1")
    leader = threading.Thread(target=coalescer.submit, args=(key, {"t": 0}, stamp(0), write))
    leader.start()
    wait_until(lambda: len(write.batches) == 1)
    with pytest.raises(WriteTimeout, match="within 0 s"):
        coalescer.submit(key, {"t": 5}, stamp(5), write)
    assert coalescer.waiting(key) == 0
    write.gate.set()
    leader.join(10)
    assert [b["t"].value for b in write.batches] == [0, 5], "the leader wrote the abandoned reading too"


# -- TwinPatcher through the real SDK against the sandbox ----------------------------------------

MODEL = {"@id": "dtmi:tw:Sensor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
         "contents": [{"@type": "Property", "name": "lastTemperature", "schema": "double"},
                      {"@type": "Property", "name": "lastHumidity", "schema": "double"}]}
IDENTITY_HEADER = "twin-writes-identity"


@dataclass
class Adt:
    sandbox: Any
    url: str
    resource_id: str
    client: Any  # DigitalTwinsClient as the deployer

    def new_twin(self, **props: Any) -> str:
        twin_id = f"tw-{uuid.uuid4().hex[:8]}"
        self.client.upsert_digital_twin(twin_id, {"$metadata": {"$model": MODEL["@id"]}, **props})
        return twin_id

    def seq(self) -> int:
        return int(self.sandbox.ctx.request_log.last_seq())

    def writes(self, since: int, twin_id: str) -> list[int]:
        return [r.status for r in self.sandbox.ctx.request_log.since(since)
                if r.method == "PATCH" and f"/digitaltwins/{twin_id}?" in r.url]

    def attempts(self, twin_id: str) -> list[tuple[float, bool]]:
        from sandbox.digitaltwins import backend

        inst = backend(self.sandbox.ctx).instance_for_resource(self.resource_id)
        assert inst is not None
        return inst.write_attempts(twin_id)


def peak_per_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((sum(1 for u in ordered if t <= u < t + 1.0) for t in ordered), default=0)


@pytest.fixture(scope="module")
def adt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adt]:
    from azure.digitaltwins.core import DigitalTwinsClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.core.auth import SandboxCredential
    from sandbox.server import Sandbox

    sb = Sandbox(tmp_path_factory.mktemp("twin-writes"), profile="instant", with_blob=False, with_aws=False,
                 with_function_apps=False)
    sb.start()
    try:
        e = sb.endpoints["azure"]
        deployer = e["deployer_principal_id"]
        kw = {"base_url": e["arm"], "connection_verify": e["ca_file"], "polling_interval": 0}
        cred = SandboxCredential(deployer)
        ResourceManagementClient(cred, e["subscription_id"], **kw).resource_groups.create_or_update(
            "rg-tw", {"location": "westeurope"})
        inst = AzureDigitalTwinsManagementClient(cred, e["subscription_id"], **kw).digital_twins.begin_create_or_update(
            "rg-tw", "adt-tw", DigitalTwinsDescription(location="westeurope")).result()
        AuthorizationManagementClient(cred, e["subscription_id"], **kw).role_assignments.create(
            inst.id, str(uuid.uuid4()), RoleAssignmentCreateParameters(
                role_definition_id=f"/subscriptions/{e['subscription_id']}/providers/Microsoft.Authorization/"
                                   "roleDefinitions/bcd981a7-7f74-457b-83e1-cceb9e632ffe",
                principal_id=deployer, principal_type="ServicePrincipal"))
        host = str(inst.host_name)
        client = DigitalTwinsClient(host, cred, connection_verify=sb.ca_file, retry_total=0)
        client.create_models([MODEL])
        yield Adt(sb, "https://" + host, str(inst.id), client)
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def identity(adt: Adt) -> Iterator[list[str]]:
    """The App Service managed-identity endpoint, issuing sandbox tokens for the deployer principal
    (who holds Digital Twins Data Owner on the instance). Module-wide, as the process keeps one
    client (and credential) per instance URL."""
    from sandbox.core.auth import make_token

    principal = adt.sandbox.endpoints["azure"]["deployer_principal_id"]
    issued: list[str] = []

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"error": "bad identity header"}, status=401)
        resource = request.query.get("resource", "")
        issued.append(resource)
        return web.json_response({"access_token": make_token(principal, resource), "token_type": "Bearer",
                                  "expires_on": str(int(time.time()) + 3600), "resource": resource})

    app = web.Application()
    app.router.add_get("/msi/token", token)
    server = ThreadedServer(app).start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IDENTITY_ENDPOINT", f"{server.url}/msi/token")
        env.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        env.setenv("REQUESTS_CA_BUNDLE", adt.sandbox.ca_file)
        try:
            yield issued
        finally:
            server.stop()


def settings_for(adt: Adt) -> Settings:
    return Settings(ADT_READS, {str(Setting.ADT_INSTANCE_URL): adt.url})


def test_one_reading_is_written_with_its_source_time(adt: Adt, identity: list[str]) -> None:
    twin_id = adt.new_twin()
    out = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 21.5, "noise": 3}, stamp(0))
    assert out.to_json() == {"twin_id": twin_id, "patched": ["lastTemperature"], "skipped": ["noise"], "stale": []}
    twin = adt.client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == 21.5 and twin["$metadata"]["lastTemperature"]["sourceTime"] == stamp(0)
    assert identity and identity[0].startswith("https://digitaltwins.azure.net")


def test_an_older_reading_after_a_newer_one_changes_nothing(adt: Adt, identity: list[str]) -> None:
    twin_id = adt.new_twin()
    TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 2.0, "humidity": 50}, stamp(2000))
    mark = adt.seq()
    older = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 1.0}, stamp(1000))
    again = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 2.0}, stamp(2000))  # redelivered
    assert older.patched == [] and older.stale == ["lastTemperature"] and again.stale == ["lastTemperature"]
    assert adt.writes(mark, twin_id) == [], "no write for readings that are not newer"
    mixed = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 1.5, "humidity": 60}, stamp(1500))
    assert mixed.patched == [] and mixed.stale == ["lastHumidity", "lastTemperature"]
    newer = TwinPatcher(settings_for(adt)).patch(twin_id, {"humidity": 70}, stamp(3000))
    assert newer.patched == ["lastHumidity"] and adt.writes(mark, twin_id) == [204]
    twin = adt.client.get_digital_twin(twin_id)
    assert (twin["lastTemperature"], twin["lastHumidity"]) == (2.0, 70)


@pytest.mark.parametrize("newest_first", [True, False])
def test_a_burst_for_one_twin_coalesces_stays_under_the_limit_and_the_newest_wins(
    adt: Adt, identity: list[str], newest_first: bool,
) -> None:
    twin_id = adt.new_twin(lastTemperature=-1.0)
    n = 60
    order = list(range(n))
    random.Random(n + newest_first).shuffle(order)
    if newest_first:
        order.remove(n - 1)
    mark = adt.seq()
    results: dict[int, PatchOutcome] = {}

    def push(i: int) -> None:
        results[i] = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": float(i)}, stamp(i))

    with ThreadPoolExecutor(16) as pool:  # a Functions host's worker threads
        if newest_first:
            pool.submit(push, n - 1).result()  # the newest reading arrives first and is written
        list(pool.map(push, order))
    writes = adt.writes(mark, twin_id)
    admitted = [t for t, ok in adt.attempts(twin_id) if ok]
    assert len(results) == n
    assert 0 < len(writes) < n / 4, writes
    assert all(s == 204 for s in writes), f"refused writes: {writes}"
    assert peak_per_second(admitted) <= 10
    twin = adt.client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == float(n - 1), "the newest reading's value"
    assert twin["$metadata"]["lastTemperature"]["sourceTime"] == stamp(n - 1)
    assert results[n - 1].patched == ["lastTemperature"]
    if newest_first:
        assert len(writes) == 1 and all(results[i].stale == ["lastTemperature"] for i in order)


def test_a_missing_twin_fails_every_reading_of_the_batch(adt: Adt, identity: list[str]) -> None:
    coalescer: TwinWriteCoalescer[TimedPatch] = TwinWriteCoalescer()
    errors: list[str] = []

    def push(i: int) -> None:
        try:
            TwinPatcher(settings_for(adt), coalescer).patch("no-such-twin", {"temperature": 1.0}, stamp(i))
        except UpstreamError as exc:
            errors.append(exc.message)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push, range(8)))
    assert errors == ["Digital Twins answered 404 (DigitalTwinNotFound) for twin no-such-twin"] * 8


class Interloper(TwinWriteCoalescer[TimedPatch]):
    """Another process's write lands between this writer's read and its write (once)."""

    def __init__(self, adt: Adt, twin_id: str, value: float, at: str) -> None:
        super().__init__()
        self.adt, self.twin_id, self.value, self.at = adt, twin_id, value, at
        self.done = False

    def _pace(self, twin: Any) -> None:
        if not self.done:
            self.done = True
            self.adt.client.update_digital_twin(self.twin_id, [
                {"op": "add", "path": "/lastTemperature", "value": self.value},
                {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": self.at}])
        super()._pace(twin)


@pytest.mark.parametrize(("theirs_ms", "expected"), [(5000, 50.0), (500, 10.0)])
def test_a_write_racing_another_process_is_conditional_and_recomputed(
    adt: Adt, identity: list[str], theirs_ms: int, expected: float,
) -> None:
    twin_id = adt.new_twin()
    TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 0.0}, stamp(0))
    mark = adt.seq()
    racer = Interloper(adt, twin_id, 50.0 if theirs_ms > 1000 else 5.0, stamp(theirs_ms))
    out = TwinPatcher(settings_for(adt), racer).patch(twin_id, {"temperature": 10.0}, stamp(1000))
    twin = adt.client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == expected
    statuses = adt.writes(mark, twin_id)
    if expected == 50.0:  # theirs is newer: after the 412 ours is dropped
        assert statuses == [204, 412] and out.stale == ["lastTemperature"]
    else:  # theirs is older: re-read, ours still newer, written
        assert statuses == [204, 412, 204] and out.patched == ["lastTemperature"]
        assert twin["$metadata"]["lastTemperature"]["sourceTime"] == stamp(1000)


def test_two_processes_bursting_on_one_twin_still_end_on_the_newest(adt: Adt, identity: list[str]) -> None:
    """Two coalescers (two Function instances): together they may exceed 10/s; the sandbox's 429s
    are retried after Retry-After, conflicts (412) re-read; the newest reading still wins."""
    twin_id = adt.new_twin()
    a: TwinWriteCoalescer[TimedPatch] = TwinWriteCoalescer()
    b: TwinWriteCoalescer[TimedPatch] = TwinWriteCoalescer()
    n = 40
    order = list(range(n))
    random.Random(3).shuffle(order)
    mark = adt.seq()
    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda i: TwinPatcher(settings_for(adt), a if i % 2 else b).patch(
            twin_id, {"temperature": float(i)}, stamp(i)), order))
    assert len(outs) == n
    twin = adt.client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == float(n - 1)
    assert twin["$metadata"]["lastTemperature"]["sourceTime"] == stamp(n - 1)
    statuses = adt.writes(mark, twin_id)
    assert statuses.count(204) < n / 2 and set(statuses) <= {204, 412, 429}


def test_a_429_is_retried_after_its_retry_after_inside_the_write(adt: Adt, identity: list[str]) -> None:
    twin_id = adt.new_twin(lastTemperature=0.0)
    from azure.core.exceptions import HttpResponseError

    for i in range(40):  # until the twin's 10 writes for this second are used up (bounded)
        try:
            adt.client.update_digital_twin(twin_id, [{"op": "replace", "path": "/lastTemperature", "value": float(i)}])
        except HttpResponseError as exc:
            assert exc.status_code == 429
            break
    mark = adt.seq()
    started = time.monotonic()
    out = TwinPatcher(settings_for(adt)).patch(twin_id, {"temperature": 99.0}, stamp(0))
    assert out.patched == ["lastTemperature"]
    assert adt.writes(mark, twin_id) == [429, 204]
    assert time.monotonic() - started >= 0.5, "the retry waited for Retry-After"
    assert adt.client.get_digital_twin(twin_id)["lastTemperature"] == 99.0
