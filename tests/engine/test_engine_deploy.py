"""deploy_twin through the local host with the fake provider: order, parallelism, long
operations, retries, permanent failures, re-runs and propagation."""

from __future__ import annotations

from typing import Any

from engine_helpers import FAST, Engine, plan, resource

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)


def _intervals(engine: Engine, op: str = "create") -> dict[str, tuple[float, float]]:
    return {rid: (start, end) for o, rid, start, end in engine.calls(op)}


def _max_concurrency(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def _deploy(engine: Engine, p: dict[str, Any], n: int = 1, options: dict[str, Any] | None = None) -> dict[str, Any]:
    instance = engine.start("deploy_twin", f"twin:{p['twin']}:deploy:{n}", {"plan": p, "options": {**FAST, **(options or {})}})
    return engine.wait(instance)


def test_dependency_order_and_eager_parallel_start(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.3}, "resources": {"azure/L3_hot/c": {"delay": 1.5}}})
    p = plan("order", [
        resource("azure/setup/root"),
        resource("azure/L2/a", ["azure/setup/root"]),
        resource("azure/L2/b", ["azure/setup/root"]),
        resource("azure/L3_hot/c", ["azure/setup/root"]),
        resource("aws/L2/d", ["azure/setup/root"]),
        resource("azure/L4/e", ["azure/L2/a", "azure/L2/b"]),
    ])
    assert _deploy(engine, p)["runtimeStatus"] == "Completed"
    spans = _intervals(engine)
    for r in p["resources"]:
        for need in r["needs"]:
            assert spans[r["id"]][0] >= spans[need][1], f"{r['id']} started before {need} finished"
    independent = [spans[k] for k in ("azure/L2/a", "azure/L2/b", "azure/L3_hot/c", "aws/L2/d")]
    assert max(s for s, _ in independent) < min(e for _, e in independent), "independent resources did not overlap"
    # e needs only a and b: it starts while the slow c (same wave) is still running.
    assert spans["azure/L4/e"][0] < spans["azure/L3_hot/c"][1]


def test_parallelism_is_bounded(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.4}})
    p = plan("bounded", [resource(f"aws/L3_hot/t{i}") for i in range(10)])
    assert _deploy(engine, p, options={"max_parallel": 4})["runtimeStatus"] == "Completed"
    assert _max_concurrency(list(_intervals(engine).values())) == 4


def test_long_operation_is_polled_with_timers(engine: Engine) -> None:
    engine.configure({"resources": {"azure/L4/adt": {"long": 1.0, "poll_after": 0.2}}})
    p = plan("long", [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"])])
    status = _deploy(engine, p)
    assert status["runtimeStatus"] == "Completed"
    assert len(engine.calls("poll")) >= 3
    assert len(engine.calls("create")) == 1
    child = engine.status("twin:long:deploy:1:azure~L4~adt")
    assert child["output"]["polls"] >= 3 and child["output"]["action"] == "created"


def test_transient_failures_are_retried_until_success(engine: Engine) -> None:
    engine.configure({"resources": {"aws/L1/iot": {"transient_failures": 2}}})
    p = plan("flaky", [resource("aws/L1/iot"), resource("aws/L2/fn", ["aws/L1/iot"])])
    assert _deploy(engine, p)["runtimeStatus"] == "Completed"
    assert [c[0] for c in engine.calls() if c[1] == "aws/L1/iot"] == ["ensure-failed", "ensure-failed", "create"]


def test_exhausted_retries_fail_with_the_resource(engine: Engine) -> None:
    engine.configure({"resources": {"aws/L1/iot": {"transient_failures": 10}}})
    p = plan("exhaust", [resource("aws/L1/iot")])
    status = _deploy(engine, p, options={"retry_attempts": 3})
    assert status["runtimeStatus"] == "Failed"
    view = engine.view("twin:exhaust:deploy:1")
    assert view["errors"][0]["resource"] == "aws/L1/iot"
    assert "503" in view["errors"][0]["message"] and "after 3 attempts" in view["errors"][0]["message"]
    assert len(engine.calls("ensure-failed")) == 3


def test_permanent_failure_fails_fast_with_id_and_message(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.2},
                      "resources": {"azure/L4/adt": {"permanent": "quota exceeded: request more Digital Twins"}}})
    p = plan("broken", [
        resource("azure/setup/rg"),
        resource("azure/L4/adt", ["azure/setup/rg"]),
        resource("azure/L4/app", ["azure/L4/adt"]),
        resource("aws/L2/fn", ["azure/setup/rg"]),
    ])
    status = _deploy(engine, p)
    assert status["runtimeStatus"] == "Failed"
    view = engine.view("twin:broken:deploy:1")
    assert view["runtimeStatus"] == "Failed"
    assert {"resource": "azure/L4/adt", "message": "azure/L4/adt: quota exceeded: request more Digital Twins"} \
        in view["errors"]
    states = {r["id"]: r["state"] for r in view["resources"]}
    assert states["azure/L4/adt"] == "failed"
    assert "azure/L4/app" not in states  # never started: its need failed
    assert len(engine.calls("ensure-failed")) == 1  # permanent: no retry
    assert view["layers"]["L4"]["state"] == "failed"
    engine.wait_idle("broken")
    # The lock is released: a fixed configuration deploys.
    engine.configure({})
    assert _deploy(engine, p, n=2)["runtimeStatus"] == "Completed"


def test_rerun_is_unchanged_and_propagation_touches_only_consumers_of_the_changed_output(engine: Engine) -> None:
    p = plan("wired", [
        resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]),
        resource("aws/L0/writer", [], ["HOT_WRITER_URL"]),
        resource("azure/L4/updater"),
        resource("aws/L2/persister"),
        resource("azure/L2/processor"),
    ], wires=[
        ("ADT_INSTANCE_URL", "azure/L4/updater", "ADT_INSTANCE_URL"),
        ("ADT_INSTANCE_URL", "aws/L2/persister", "ADT_INSTANCE_URL"),
        ("HOT_WRITER_URL", "azure/L2/processor", "REMOTE_WRITER_URL"),
    ])
    assert _deploy(engine, p, 1)["runtimeStatus"] == "Completed"
    engine.wait_idle("wired")
    first_writes = len(engine.calls("apply-write"))

    assert _deploy(engine, p, 2)["runtimeStatus"] == "Completed"
    engine.wait_idle("wired")
    view = engine.view("twin:wired:deploy:2")
    assert view["summary"]["text"] == "0 created, 0 updated, 5 unchanged"
    assert len(engine.calls("apply-write")) == first_writes  # values already current: no write

    engine.configure({"resources": {"azure/L4/adt": {"generation": 2}}})
    assert _deploy(engine, p, 3)["runtimeStatus"] == "Completed"
    engine.wait_idle("wired")
    writes = [rid for _, rid, *_ in engine.calls("apply-write")][first_writes:]
    assert sorted(writes) == ["aws/L2/persister", "azure/L4/updater"]
    assert engine.settings("aws/L2/persister")["ADT_INSTANCE_URL"].endswith("/g2")
    view = engine.view("twin:wired:deploy:3")
    assert view["summary"]["text"] == "0 created, 1 updated, 4 unchanged"
    assert view["outputs"]["ADT_INSTANCE_URL"]["version"] == 2


def test_propagation_by_hand_makes_no_write_when_current(engine: Engine) -> None:
    p = plan("quiet", [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]), resource("azure/L4/app")],
             wires=[("ADT_INSTANCE_URL", "azure/L4/app", "ADT_INSTANCE_URL")])
    assert _deploy(engine, p)["runtimeStatus"] == "Completed"
    engine.wait_idle("quiet")
    before = len(engine.calls("apply-write"))
    instance = engine.start("propagate_outputs", "twin:quiet:propagate:x", {"twin": "quiet"})
    result = engine.wait(instance)
    assert result["runtimeStatus"] == "Completed"
    assert result["output"]["unchanged"] == ["azure/L4/app"] and result["output"]["changed"] == []
    assert len(engine.calls("apply-write")) == before


def _deployed_with_a_new_url_ahead(engine: Engine, twin: str, rollout: int) -> dict[str, Any]:
    """A twin whose persister holds the instance URL; then a new URL, whose settings write rolls out
    over `rollout` further calls. The persister starts with the instance (no needs), so it is given
    the old URL and the new one reaches it through `settings_apply`."""
    p = plan(twin, [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]), resource("gcp/L2/persister")],
             wires=[("ADT_INSTANCE_URL", "gcp/L2/persister", "ADT_INSTANCE_URL")])
    assert _deploy(engine, p)["runtimeStatus"] == "Completed"
    engine.wait_idle(twin)
    engine.configure({"resources": {"azure/L4/adt": {"generation": 2}, "gcp/L2/persister": {"apply_rollout": rollout}}})
    return p


def test_settings_still_rolling_out_are_polled_until_they_serve(engine: Engine) -> None:
    p = _deployed_with_a_new_url_ahead(engine, "rollout", 3)
    assert _deploy(engine, p, 2)["runtimeStatus"] == "Completed"
    engine.wait_idle("rollout")
    assert engine.settings("gcp/L2/persister")["ADT_INSTANCE_URL"].endswith("/g2")
    # The write answered pending, then three calls while its settings rolled out; the next saw them serve.
    assert [rid for _, rid, *_ in engine.calls("apply-pending")] == ["gcp/L2/persister"] * 3
    instance = engine.start("propagate_outputs", "twin:rollout:propagate:x", {"twin": "rollout"})
    result = engine.wait(instance)
    assert result["runtimeStatus"] == "Completed"  # the applied version was recorded once they served
    assert result["output"]["unchanged"] == ["gcp/L2/persister"] and result["output"]["changed"] == []


def test_settings_that_never_serve_fail_the_propagation_at_the_poll_deadline(engine: Engine) -> None:
    p = _deployed_with_a_new_url_ahead(engine, "stuck", 1000)
    result = _deploy(engine, p, 2, options={"poll_timeout_seconds": 0.5})
    assert result["runtimeStatus"] == "Failed"
    assert "gcp/L2/persister: new settings rolling out did not finish within 0.5 s" in str(result["output"])
    assert "gcp/L2/persister: gcp/L2/persister:" not in str(result["output"])


def test_destroy_is_reverse_ordered_and_tolerates_resources_already_gone(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.1}})
    p = plan("gone", [
        resource("azure/setup/rg"),
        resource("azure/L4/adt", ["azure/setup/rg"], ["ADT_INSTANCE_URL"]),
        resource("azure/L4/app", ["azure/L4/adt"]),
        resource("aws/L2/fn", ["azure/setup/rg"]),
    ])
    assert _deploy(engine, p)["runtimeStatus"] == "Completed"
    engine.wait_idle("gone")
    with engine.db() as db:
        db.execute("DELETE FROM resources WHERE rid = 'aws/L2/fn'")  # removed behind our back
    running = engine.start("deploy_twin", "twin:gone:deploy:2", {"plan": p, "options": FAST})
    assert engine.api("DELETE", "twins/gone").status == 409
    engine.wait(running)
    engine.wait_idle("gone")
    reply = engine.api("DELETE", "twins/gone")
    assert reply.status == 202, reply.body
    status = engine.wait(reply.json()["id"])
    assert status["runtimeStatus"] == "Completed", status
    # Deploy 2 re-created fn (ensure reconciles), so all four exist and are deleted.
    assert status["output"]["summary"] == {"deleted": 4, "absent": 0}
    deletes = {rid: start for op, rid, start, _ in engine.calls() if op in ("delete", "delete-absent")}
    ends = {rid: end for op, rid, _, end in engine.calls() if op in ("delete", "delete-absent")}
    assert ends["azure/L4/app"] <= deletes["azure/L4/adt"] and ends["azure/L4/adt"] <= deletes["azure/setup/rg"]
    assert ends["aws/L2/fn"] <= deletes["azure/setup/rg"]
    assert engine.api("GET", "twins/gone").status == 404

    # A second twin whose resources vanished before destroy: `absent`, not an error.
    assert _deploy(engine, plan("ghost", [resource("aws/L1/a"), resource("aws/L1/b")]))["runtimeStatus"] == "Completed"
    engine.wait_idle("ghost")
    with engine.db() as db:
        db.execute("DELETE FROM resources WHERE rid LIKE 'aws/L1/%'")
    reply = engine.api("DELETE", "twins/ghost")
    status = engine.wait(reply.json()["id"])
    assert status["runtimeStatus"] == "Completed" and status["output"]["summary"] == {"deleted": 0, "absent": 2}


def test_many_devices_are_batched_and_each_created_once(engine: Engine) -> None:
    devices = [resource(f"azure/L1/device-{i:02d}", ["azure/L1/hub"], [f"DEVICE_CREDENTIALS:{i}"], kind="iot-device")
               for i in range(40)]
    p = plan("fleet", [resource("azure/L1/hub", kind="iot-hub"), *devices, resource("azure/L4/twins", ["azure/L1/hub"])],
             secret=tuple(f"DEVICE_CREDENTIALS:{i}" for i in range(40)))
    engine.configure({"resources": {"azure/L1/device-07": {"transient_failures": 1},
                                    "azure/L1/device-03": {"long": 0.6, "poll_after": 0.2}}})
    status = _deploy(engine, p, options={"batch_threshold": 8, "batch_size": 16, "max_parallel": 8})
    assert status["runtimeStatus"] == "Completed", status
    creates = [rid for _, rid, *_ in engine.calls("create")]
    assert sorted(creates) == sorted(r["id"] for r in p["resources"])
    batches = engine.durable("GET", "instances/?instanceIdPrefix=twin:fleet:deploy:1:batch").json()
    top_batches = [b for b in batches if b["name"] == "resources_batch"]
    assert len(top_batches) >= 3  # 40 devices in batches of at most 16
    view = engine.view("twin:fleet:deploy:1")
    assert view["summary"]["text"] == "42 created, 0 updated, 0 unchanged"
    assert view["layers"]["L1"] == {"provider": "azure", "state": "done", "done": 41, "total": 41}
    assert all(o["value"] == "***" for n, o in view["outputs"].items() if n.startswith("DEVICE_CREDENTIALS"))
    engine.wait_idle("fleet")

    reply = engine.api("DELETE", "twins/fleet")
    destroyed = engine.wait(reply.json()["id"])
    assert destroyed["runtimeStatus"] == "Completed" and destroyed["output"]["summary"]["deleted"] == 42


def test_a_failing_device_in_a_batch_fails_the_deployment_with_its_id(engine: Engine) -> None:
    devices = [resource(f"azure/L1/device-{i:02d}", [], [], kind="iot-device") for i in range(12)]
    engine.configure({"resources": {"azure/L1/device-05": {"permanent": "device id rejected by the registry"}}})
    status = _deploy(engine, plan("badfleet", devices), options={"batch_threshold": 4, "batch_size": 12})
    assert status["runtimeStatus"] == "Failed"
    view = engine.view("twin:badfleet:deploy:1")
    assert view["errors"][0] == {"resource": "azure/L1/device-05",
                                 "message": "azure/L1/device-05: device id rejected by the registry"}


def test_resources_dropped_from_the_spec_are_deleted_dependents_first_unless_prune_is_off(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.05}})
    full = plan("prune", [
        resource("azure/setup/rg"),
        resource("azure/L1/hub", ["azure/setup/rg"]),
        resource("azure/L1/device-a", ["azure/L1/hub"], ["DEVICE_CREDENTIALS:a"], kind="iot-device"),
        resource("azure/L1/device-b", ["azure/L1/hub"], ["DEVICE_CREDENTIALS:b"], kind="iot-device"),
        resource("azure/L4/adt", ["azure/setup/rg"], ["ADT_INSTANCE_URL"]),
        resource("azure/L4/models", ["azure/L4/adt"]),
    ])
    assert _deploy(engine, full)["runtimeStatus"] == "Completed"
    engine.wait_idle("prune")

    # Dropping device-b alone, with pruning off: nothing is deleted, the record stays.
    without_b = plan("prune", [r for r in full["resources"] if r["id"] != "azure/L1/device-b"])
    kept = engine.wait(engine.start("deploy_twin", "twin:prune:deploy:2",
                                    {"plan": without_b, "options": FAST, "prune": False}))
    assert kept["runtimeStatus"] == "Completed" and kept["output"]["summary"]["deleted"] == 0
    engine.wait_idle("prune")
    assert [c for c in engine.calls() if c[0].startswith("delete")] == []

    # By default: device-b goes, and the whole L4 (models before the instance it needs).
    smaller = plan("prune", [r for r in without_b["resources"] if not r["id"].startswith("azure/L4/")])
    status = _deploy(engine, smaller, n=3)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["summary"]["deleted"] == 3 and status["output"]["summary"]["unchanged"] == 3
    deletes = {rid: (start, end) for op, rid, start, end in engine.calls() if op == "delete"}
    assert set(deletes) == {"azure/L1/device-b", "azure/L4/models", "azure/L4/adt"}
    assert deletes["azure/L4/models"][1] <= deletes["azure/L4/adt"][0]
    engine.wait_idle("prune")
    twin = engine.api("GET", "twins/prune").json()
    assert sorted(r["id"] for r in twin["resources"]) == sorted(r["id"] for r in smaller["resources"]), twin
    assert "ADT_INSTANCE_URL" not in twin["outputs"] and "DEVICE_CREDENTIALS:b" not in twin["outputs"]


def test_after_the_walk_only_consumers_behind_are_re_applied(engine: Engine) -> None:
    """Consumers ensured with the latest outputs are not read again (their applied versions say
    they are current), however many `twin.output.changed` events the walk raised; only `late`,
    ensured before its output existed, is re-applied, once, as soon as the output exists (beside
    the walk), so nothing is left for after it."""
    engine.configure({"resources": {"azure/L4/adt": {"delay": 0.6}}})
    p = plan("skip", [
        resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]),
        resource("azure/L4/early-1", ["azure/L4/adt"]),
        resource("azure/L4/early-2", ["azure/L4/adt"]),
        resource("aws/L2/late"),
    ], wires=[("ADT_INSTANCE_URL", c, "ADT_INSTANCE_URL") for c in ("azure/L4/early-1", "azure/L4/early-2", "aws/L2/late")])
    status = _deploy(engine, p)
    assert status["runtimeStatus"] == "Completed", status
    engine.wait_idle("skip")
    assert [rid for _, rid, *_ in engine.calls("apply-read")] == ["aws/L2/late"]
    assert status["output"]["propagation"] == {"changed": 0, "unchanged": 0}  # nothing behind after the walk
    assert engine.api("GET", "twins/skip").json()["behind"] == []
    assert engine.settings("aws/L2/late")["ADT_INSTANCE_URL"].startswith("https://azure.L4.adt")
