"""App loading, routing, the in-process API's lifecycle, and the serve command's input checks."""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import pytest
from host_helpers import APPS, HostClient, HostFactory

from local_host import AppLoadError, HostError, LocalHost, load_app
from local_host.app_loader import route_pattern
from twin_cli.commands import serve


def test_route_templates() -> None:
    pattern = route_pattern("items/{category}/{id?}")
    assert pattern.fullmatch("/items/books").groupdict() == {"category": "books", "id": None}
    assert pattern.fullmatch("/items/books/7").groupdict() == {"category": "books", "id": "7"}
    assert pattern.fullmatch("/items") is None
    assert route_pattern("files/{*rest}").fullmatch("/files/a/b/c").groupdict() == {"rest": "a/b/c"}
    assert route_pattern("n/{id:int}").fullmatch("/n/12").groupdict() == {"id": "12"}
    assert route_pattern("v{version}/x").fullmatch("/v2/x").groupdict() == {"version": "2"}


def test_registry_lists_and_skips() -> None:
    registry = load_app(APPS / "misc")
    assert "Renamed" in registry.activities and registry.renamed == {"renamed_activity": "Renamed"}
    assert registry.timers == {"hourly": "0 0 * * * *"}
    assert registry.skipped == {"on_queue": "queueTrigger"}
    summary = "\n".join(registry.summary())
    assert "hourly: timerTrigger" in summary and "on_queue: queueTrigger; not supported" in summary
    # Loading the same folder again in the same process works (unique module names).
    assert load_app(APPS / "misc").module_name != registry.module_name


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match=r"function_app.py: no function_app.py"):
        load_app(tmp_path)
    with pytest.raises(AppLoadError, match=r"broken/function_app.py: import failed: ModuleNotFoundError"):
        load_app(APPS / "broken")
    with pytest.raises(AppLoadError, match=r"no FunctionApp/DFApp object"):
        load_app(APPS / "empty")


def test_http_routes_and_errors(host_factory: HostFactory) -> None:
    _, client = host_factory("misc")
    assert client.request("GET", "/api/items/books").json() == {"category": "books"}
    assert client.request("GET", "/api/ITEMS/books/9").json() == {"category": "books", "id": "9"}
    reply = client.request("POST", "/api/echo", raw=b"payload", headers={"x-in": "hi"})
    assert (reply.status, reply.body, reply.headers["X-Echo"]) == (201, b"payload", "hi")
    crashed = client.request("GET", "/api/crash")
    assert crashed.status == 500 and b"secret-ish" not in crashed.body and b"RuntimeError" in crashed.body


def test_renamed_function_called_by_object_is_flagged(host_factory: HostFactory) -> None:
    _, client = host_factory("misc")
    reply = client.durable("POST", "orchestrators/CallsByObject", None)
    assert reply.status == 202
    status = client.wait(reply.json()["id"])
    assert status["runtimeStatus"] == "Failed"
    assert "'renamed_activity' is the Python name of the function registered as 'Renamed'" in status["output"]


def test_lifecycle_one_host_per_process_and_environ(tmp_path: Path) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    host = LocalHost(app_dir=APPS / "misc", state_dir=tmp_path, function_key="k",
                     environ={"LOCALHOST_TEST_SETTING": "on"})
    with host:
        assert os.environ["LOCALHOST_TEST_SETTING"] == "on"
        assert host.base_url.startswith("http://127.0.0.1:") and host.port > 0
        with pytest.raises(HostError, match="already running"):
            LocalHost(app_dir=APPS / "misc", state_dir=tmp_path / "other").start()
    assert "LOCALHOST_TEST_SETTING" not in os.environ
    # Short-lived threads started meanwhile (an import's warm-up, a pool finishing) may still be
    # ending; a leak is a thread that outlives the host for good.
    deadline = time.monotonic() + 10
    while {t.ident for t in threading.enumerate()} - threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.ident not in threads_before] == []
    # A second host after the first stopped is fine (the SDK session is re-bound to the new loop).
    with LocalHost(app_dir=APPS / "contract", state_dir=tmp_path / "again", function_key="k") as again:
        client = HostClient(again)
        iid = client.request("POST", "/api/orchestrators/ActivityError").json()["id"]
        assert client.request("GET", f"/runtime/webhooks/durabletask/instances/{iid}?code=k").status in (200, 202)


def test_bad_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="import failed"):
        LocalHost(app_dir=APPS / "broken", state_dir=tmp_path).start()
    with pytest.raises(HostError, match="activity_concurrency"):
        LocalHost(app_dir=APPS / "misc", activity_concurrency=0)
    # The failed start released the one-host-per-process slot.
    with LocalHost(app_dir=APPS / "misc", state_dir=tmp_path / "ok"):
        pass


def test_serve_command_rejects_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--app", str(tmp_path)])
    assert args.func(args) == 2
    assert "function_app.py does not exist" in capsys.readouterr().out
    args = parser.parse_args(["serve", "--app", str(APPS / "broken"), "--port", "0"])
    assert args.func(args) == 1
    assert "import failed" in capsys.readouterr().out


def test_fast_replay_is_opt_in_and_restored(host_factory: HostFactory) -> None:
    import importlib

    from dateutil.parser import parse

    module = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")

    assert module.dt_parse is parse
    host, client = host_factory("contract", fast_replay=True)
    assert module.dt_parse is not parse
    status = client.wait(client.start("RetryInFanOut", "fast"))
    assert status["output"] == ["flaky-ok fast-a", "Hello b!", "flaky-ok fast-c", "Hello after!"]
    host.stop()
    assert module.dt_parse is parse


def test_function_keys_open_function_routes_but_not_webhooks(
    host_factory: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on Azure: the host's function keys (e.g. `default`) open FUNCTION-level routes; the
    Durable and Event Grid webhooks need the master key."""
    monkeypatch.setenv("FUNCTIONS_FUNCTION_KEYS", "fn-key-1, fn-key-2")
    _, client = host_factory("contract")
    assert client.request("GET", "/api/hello/ann?code=fn-key-2").status == 200
    assert client.request("GET", "/api/hello/ann", headers={"x-functions-key": "fn-key-1"}).status == 200
    assert client.request("GET", "/api/hello/ann?code=fn-key-3").status == 401
    assert client.request("GET", "/runtime/webhooks/durabletask/instances/x?code=fn-key-1").status == 401
