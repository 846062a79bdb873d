"""Token rotation under continuous traffic: receivers accept new and previous, then senders
switch, then (after a grace period) receivers drop the previous token. No message is rejected."""

from __future__ import annotations

import itertools
import random
import threading
import time

from engine_helpers import Engine, plan, resource

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)

TOKEN, PREVIOUS = "INTER_CLOUD_TOKEN", "INTER_CLOUD_TOKEN_PREVIOUS"
RECEIVERS = ["aws/L0/hot-writer", "azure/L0/function-app"]
SENDERS = ["azure/L2/function-app", "aws/L3_hot/mover"]


def _plan() -> dict:
    token = resource("control/setup/inter-cloud-token", [], [TOKEN, PREVIOUS], kind="secret", name="inter-cloud-token",
                     bytes=32, encoding="urlsafe-base64", keeps_previous=True)
    wires = [(TOKEN, r, TOKEN) for r in RECEIVERS] + [(PREVIOUS, r, PREVIOUS) for r in RECEIVERS]
    wires += [(TOKEN, s, TOKEN) for s in SENDERS]
    return plan("rot", [token, *(resource(r, [token["id"]]) for r in RECEIVERS + SENDERS)], wires,
                secret=(TOKEN, PREVIOUS))


def test_rotation_with_continuous_traffic_loses_no_message(engine: Engine) -> None:
    assert engine.wait(engine.start("deploy_twin", "twin:rot:deploy:1", {"plan": _plan()}))["runtimeStatus"] == "Completed"
    engine.wait_idle("rot")
    original = engine.settings(SENDERS[0])[TOKEN]
    assert all(engine.settings(r)[TOKEN] == original and engine.settings(r)[PREVIOUS] == "" for r in RECEIVERS)
    engine.configure({"default": {"apply_delay": 0.1}})

    sent, rejected = [0], []
    stop = threading.Event()

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        pairs = itertools.cycle([(s, r) for s in SENDERS for r in RECEIVERS])
        while not stop.is_set():
            sender, receiver = next(pairs)
            header = engine.settings(sender)[TOKEN]
            time.sleep(rng.uniform(0, 0.05))  # in flight
            accepted = {v for k, v in engine.settings(receiver).items() if k in (TOKEN, PREVIOUS) and v}
            sent[0] += 1
            if header not in accepted:
                rejected.append((sender, receiver))

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        reply = engine.api("POST", "twins/rot/tokens/rotate", {"grace_seconds": 0.5})
        assert reply.status == 202, reply.body
        status = engine.wait(reply.json()["id"])
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert status["runtimeStatus"] == "Completed", status
    assert sent[0] > 50 and rejected == []
    new = engine.settings(SENDERS[1])[TOKEN]
    assert new != original and all(engine.settings(s)[TOKEN] == new for s in SENDERS)
    assert all(engine.settings(r)[TOKEN] == new and engine.settings(r)[PREVIOUS] == "" for r in RECEIVERS)
    twin = engine.api("GET", "twins/rot").json()
    assert twin["outputs"][TOKEN] == {"value": "***", "version": 2, "producer": "control/setup/inter-cloud-token",
                                      "secret": True}
    assert new not in engine.api("GET", f"deployments/{reply.json()['id']}").body.decode()
