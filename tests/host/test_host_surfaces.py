"""The local host's exposed surfaces (issue 12 items 2, 3, 8, 9): what listens where, which key
opens what, what a browser page can reach, and what a request can write into the log."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from pathlib import Path

import pytest
from host_helpers import APPS, HostClient, HostFactory

from local_host import AppLoadError, LocalHost, load_app

CTX_APP = '''
import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="ctx")
def hello(ctx: df.DurableOrchestrationContext):
    return (yield ctx.call_activity("shout", "x"))


@app.activity_trigger(input_name="payload")
def shout(payload: str) -> str:
    return payload.upper()
'''


def _binding(client: HostClient) -> dict[str, str]:
    """The durable client binding the host injects (the contract app echoes it)."""
    reply = client.request("POST", "/api/manage/binding")
    assert reply.status == 200, reply.body
    return dict(reply.json())


def _started(client: HostClient, key: str | None = None) -> dict[str, str]:
    headers = {"x-functions-key": key} if key else None
    reply = client.request("POST", "/api/orchestrators/SubOrch", {"x": 3}, headers=headers)
    assert reply.status == 202, reply.body
    return dict(reply.json())


def test_the_durable_rpc_base_is_not_on_the_public_listener(host_factory: HostFactory) -> None:
    """A keyless POST to the client's RPC base destroyed a twin; now the public port has no such
    route, and the RPC listener answers only under a secret only this process knows."""
    host, client = host_factory("contract")
    reply = client.request("POST", "/durabletask/orchestrators/SubOrch", raw=b"x",
                           headers={"Content-Type": "text/plain"})
    assert reply.status == 404 and reply.json()["errors"][0]["message"]
    assert client.request("GET", "/durabletask/instances/").status == 404
    rpc = urllib.parse.urlsplit(_binding(client)["rpcBaseUrl"])
    assert rpc.hostname == "127.0.0.1" and rpc.port != host.port
    secret = rpc.path.strip("/").split("/")[0]
    assert len(secret) >= 32 and secret not in json.dumps(_started(client))
    base = f"http://127.0.0.1:{rpc.port}"
    assert client.request("GET", f"{base}/durabletask/instances/").status == 404
    assert client.request("GET", f"{base}/{secret[:-1]}x/durabletask/instances/").status == 404
    # The SDK client works through it (the starter above used it), and so does the secret.
    assert client.request("GET", f"{base}{rpc.path}instances/").status == 200


def test_status_urls_carry_the_durable_system_key_not_the_master_key(
    host_factory: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNCTIONS_FUNCTION_KEYS", "fn-key-1")
    host, client = host_factory("contract")
    urls = _started(client, key="fn-key-1")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(urls["statusQueryGetUri"]).query)["code"][0]
    assert code != host.function_key and code != "fn-key-1"
    assert all(host.function_key not in v for v in urls.values())
    assert client.request("GET", urls["statusQueryGetUri"]).status in (200, 202)
    # It opens the Durable HTTP API only: not /admin, not FUNCTION routes, not the Event Grid webhook.
    assert client.request("POST", f"/admin/functions/anything?code={code}", {}).status == 401
    assert client.request("GET", f"/admin/host/status?code={code}").status == 401
    assert client.request("GET", f"/api/hello/ann?code={code}").status == 401
    assert client.request("POST", f"/runtime/webhooks/eventgrid?functionName=x&code={code}", []).status == 401
    # A function key opens no webhook either.
    assert client.request("GET", "/runtime/webhooks/durabletask/instances/?code=fn-key-1").status == 401


def test_the_header_key_wins_over_the_query_key(host_factory: HostFactory) -> None:
    host, client = host_factory("contract")
    right = {"x-functions-key": host.function_key}
    assert client.request("GET", "/api/hello/ann?code=wrong", headers=right).status == 200
    assert client.request("GET", f"/api/hello/ann?code={host.function_key}",
                          headers={"x-functions-key": "wrong"}).status == 401


def test_browser_pages_and_rebound_names_are_refused(host_factory: HostFactory) -> None:
    host, client = host_factory("contract")
    key = {"x-functions-key": host.function_key}
    reply = client.request("GET", "/api/hello/ann", headers={**key, "Origin": "https://evil.example"})
    assert reply.status == 403 and "browser" in reply.json()["errors"][0]["message"]
    reply = client.request("POST", "/runtime/webhooks/durabletask/orchestrators/SubOrch", raw=b"x",
                           headers={**key, "Origin": "null", "Content-Type": "text/plain"})
    assert reply.status == 403
    assert client.request("GET", "/api/hello/ann", headers={**key, "Host": "evil.example:80"}).status == 403
    assert client.request("GET", "/api/hello/ann", headers={**key, "Host": f"localhost:{host.port}"}).status == 200


def test_host_errors_have_the_error_shape_and_405_says_allow(host_factory: HostFactory) -> None:
    host, client = host_factory("contract")
    for reply, status in ((client.request("GET", "/api/hello/ann"), 401),
                          (client.request("GET", "/runtime/webhooks/durabletask/instances/x"), 401),
                          (client.request("GET", "/api/no/such/route"), 404),
                          (client.request("GET", "/nothing-here"), 404),
                          (client.request("DELETE", f"/api/hello/ann?code={host.function_key}"), 405)):
        assert reply.status == status
        errors = reply.json()["errors"]
        assert errors and set(errors[0]) == {"path", "message"} and errors[0]["message"]
    reply = client.request("DELETE", f"/api/hello/ann?code={host.function_key}")
    assert reply.headers["Allow"] == "GET"


def test_request_paths_cannot_forge_log_lines(host_factory: HostFactory, caplog: pytest.LogCaptureFixture) -> None:
    host, client = host_factory("contract")
    caplog.set_level(logging.INFO, logger="local_host")
    for forged in ("%0D2030-01-01%20INFO%20local_host:%20forged%1B%5B31m",
                   "%0D%0A2030-01-01%20INFO%20local_host:%20forged%1B%5B31m"):
        assert client.request("GET", f"/api/hello/ann{forged}?code={host.function_key}").status in (200, 404)
    lines = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert len(lines) == 2, [r.getMessage() for r in caplog.records]
    assert not any(ch in line for line in lines for ch in "\r\n\x1b")


def test_keys_persist_in_the_state_dir(tmp_path: Path) -> None:
    """A statusQueryGetUri issued before a restart still works after it."""
    state = tmp_path / "state"
    with LocalHost(app_dir=APPS / "contract", state_dir=state, port=0) as first:
        client = HostClient(first)
        urls = _started(client, key=first.function_key)
        deadline = time.monotonic() + 20
        while client.request("GET", urls["statusQueryGetUri"]).status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        master = first.function_key
    assert (state / "host_keys.json").stat().st_mode & 0o077 == 0
    with LocalHost(app_dir=APPS / "contract", state_dir=state, port=0) as second:
        client = HostClient(second)
        assert second.function_key == master
        reply = client.request("GET", urls["statusQueryGetUri"].replace(f":{first.port}/", f":{second.port}/"))
        assert reply.status == 200 and reply.json()["runtimeStatus"] == "Completed"


def test_a_given_key_is_used_and_never_written(tmp_path: Path) -> None:
    with LocalHost(app_dir=APPS / "contract", state_dir=tmp_path, port=0, function_key="given-key") as host:
        assert host.function_key == "given-key"
    assert "given-key" not in (tmp_path / "host_keys.json").read_text()


def test_an_orchestrator_context_name_other_than_context_is_refused_at_load(tmp_path: Path) -> None:
    """The SDK's generated handler takes `context`; the Python worker cannot bind `ctx` to it and
    fails the app's indexing on Azure, so the host says so when it loads the app, not with
    "unexpected keyword argument" when the orchestration first runs."""
    (tmp_path / "function_app.py").write_text(CTX_APP)
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    message = str(caught.value)
    assert "hello" in message and 'context_name="context"' in message
