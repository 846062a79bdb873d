"""Packaging: reproducible zips, import closures, generated entry points that really load."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from payload_functions.packaging import (
    EXTENSION_BUNDLE,
    LAMBDA_HANDLER,
    PackagingError,
    UserCodeFolder,
    build_azure_app_package,
    build_for_resource,
    build_lambda_package,
    supported_functions,
    user_package_name,
)
from shared.bundle import FILE_MODE, FIXED_DATE, folder_digest
from shared.contracts import Function, Setting
from shared.resources import UserCodeRef
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig, FunctionRuntime, HostedFunction

USER_CODE = {Function.USER_PROCESSOR, Function.EVENT_ACTION}
"""Functions that run users' code: never packaged without it."""
AZURE_ALL = tuple(f for f in supported_functions("azure") if f not in USER_CODE)
AWS_ALL = tuple(f for f in supported_functions("aws") if f not in USER_CODE)
ALLOWED_TOP = {"payload_functions", "shared"}
GENERATED_AZURE = {"function_app.py", "host.json", "requirements.txt"}


def _zip(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def _extract(data: bytes, where: Path) -> Path:
    _zip(data).extractall(where)
    return where


def _run_isolated(root: Path, code: str) -> dict:
    """Run `code` in a fresh interpreter that imports first-party code only from `root`."""
    probe = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        f"{code}\n"
        "mods = {n: getattr(m, '__file__', '') or '' for n, m in list(sys.modules.items())\n"
        "        if n.split('.')[0] in ('payload_functions', 'shared', 'sandbox', 'tests', 'control_plane',\n"
        "                                'activities', 'orchestrators')}\n"
        "print(json.dumps({'result': RESULT, 'modules': mods}))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", probe], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, file in out["modules"].items():
        assert file.startswith(str(root)), f"{name} was imported from outside the package: {file}"
    return out["result"]


def test_zips_are_byte_identical_across_builds_and_input_order() -> None:
    a = build_azure_app_package("app", list(AZURE_ALL))
    b = build_azure_app_package("app", list(reversed(AZURE_ALL)))
    assert a.data == b.data and a.sha256 == b.sha256
    for fn in AWS_ALL:
        assert build_lambda_package(fn).data == build_lambda_package(str(fn)).data


def test_zip_entries_are_sorted_with_fixed_time_and_mode_and_hash_is_lambda_style() -> None:
    package = build_lambda_package(Function.PERSISTER)
    infos = _zip(package.data).infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert all(i.date_time == FIXED_DATE and i.external_attr >> 16 == FILE_MODE for i in infos)
    assert package.sha256 == base64.b64encode(hashlib.sha256(package.data).digest()).decode()
    assert package.sha256_hex == hashlib.sha256(package.data).hexdigest()
    assert package.entry_point == LAMBDA_HANDLER == "lambda_function.handler"


def test_content_hash_changes_with_the_function_set() -> None:
    one = build_azure_app_package("app", [Function.HOT_WRITER])
    two = build_azure_app_package("app", [Function.HOT_WRITER, Function.HOT_READER])
    assert one.sha256 != two.sha256


@pytest.mark.parametrize("functions", [
    [Function.HOT_WRITER],
    [Function.ADT_PUSHER, Function.INGESTION, Function.COLD_WRITER],
    [Function.DISPATCHER, Function.CONNECTOR],
    [Function.PROCESSOR, Function.PERSISTER, Function.EVENT_CHECKER],
    list(AZURE_ALL),
], ids=["hot-writer", "l0", "l1", "l2", "all"])
def test_closure_is_first_party_only_and_requirements_match_imports(functions: list[Function]) -> None:
    package = build_azure_app_package("app", functions)
    names = set(package.files)
    assert names >= GENERATED_AZURE
    tops = {n.split("/")[0] for n in names - GENERATED_AZURE}
    assert tops <= ALLOWED_TOP, tops
    assert not [n for n in names if n.startswith(("tests/", "sandbox/", "control_plane/", "activities/"))]
    # Only what the hosted functions import: a hot-writer-only app has no Digital Twins SDK.
    reqs = set(package.requirements)
    assert "azure-functions>=1.24,<2" in reqs and not any(r.startswith("boto3") for r in reqs)
    if functions == [Function.HOT_WRITER]:
        assert not any("digitaltwins" in r or "storage-blob" in r for r in reqs)
        assert "payload_functions/azure/adt_pusher.py" not in names
    text = _zip(package.data).read("requirements.txt").decode()
    assert text.splitlines() == list(package.requirements)
    host = json.loads(_zip(package.data).read("host.json"))
    assert host["version"] == "2.0" and host["extensionBundle"] == EXTENSION_BUNDLE
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_generated_function_app_indexes_exactly_the_expected_functions(tmp_path: Path) -> None:
    chosen = [Function.ADT_PUSHER, Function.HOT_WRITER, Function.DISPATCHER, Function.HOT_TO_COLD_MOVER,
              Function.PROCESSOR]
    root = _extract(build_azure_app_package("app", chosen).data, tmp_path)
    result = _run_isolated(root, (
        "import function_app\n"
        "RESULT = sorted((f.get_function_name(), f.get_bindings_dict()['bindings'][0]['type'])\n"
        "                for f in function_app.app.get_functions())"
    ))
    assert sorted(map(tuple, result)) == sorted([
        ("adt-pusher", "httpTrigger"), ("hot-writer", "httpTrigger"), ("dispatcher", "eventGridTrigger"),
        ("hot-to-cold-mover", "timerTrigger"), ("processor", "httpTrigger")])


def test_sandbox_kudu_indexer_reads_the_same_functions_and_routes() -> None:
    """The sandbox's static indexer (what the local Kudu reports) agrees with the package."""
    from sandbox.kudu.indexer import ZipIndexer

    package = build_azure_app_package("app", list(AZURE_ALL))
    found = {f.name: f for f in ZipIndexer(_zip(package.data)).index()}
    assert set(found) == set(package.functions)
    for name, info in found.items():
        if info.trigger == "httpTrigger":
            assert info.route == name


def test_lambda_zip_loads_alone_and_answers_a_missing_setting_clearly(tmp_path: Path) -> None:
    root = _extract(build_lambda_package(Function.HOT_WRITER).data, tmp_path)
    result = _run_isolated(root, (
        "import lambda_function\n"
        "event = {'version': '2.0', 'rawPath': '/', 'headers': {}, 'body': '{}', 'isBase64Encoded': False,\n"
        "         'requestContext': {'http': {'method': 'POST'}}}\n"
        "RESULT = lambda_function.handler(event, None)"
    ))
    assert result["statusCode"] == 500
    assert json.loads(result["body"]) == {"error": f"setting {Setting.INTER_CLOUD_TOKEN} is not configured"}


def _folder(kind: str, name: str, files: dict[str, bytes], path: str = "lambda_functions/processors/s1",
            entry: tuple[str, str] = ("process", "process")) -> UserCodeFolder:
    digest = folder_digest({f"{path}/{k}": v for k, v in files.items()}, path)
    ref = UserCodeRef(kind=kind, name=name, bundle="0" * 64, path=path, digest=digest,  # type: ignore[arg-type]
                      module=entry[0], function=entry[1])
    return UserCodeFolder(ref, files)


def test_user_code_is_packaged_under_its_own_package_and_checked() -> None:
    code = {"process.py": b"from . import helpers\n\ndef process(event):\n    return helpers.calibrate(event)\n",
            "helpers.py": b"import boto3\n\ndef calibrate(event):\n    return event\n"}
    folder = _folder("processor", "s1", code)
    package = build_lambda_package(Function.PROCESSOR, user_code=[folder])
    archive = _zip(package.data)
    base = f"user_code/{user_package_name(folder.ref)}"
    assert archive.read(f"{base}/process.py") == code["process.py"]
    assert archive.read(f"{base}/__init__.py") == b""
    index = archive.read("user_code/__init__.py").decode()
    assert f'"s1": ["user_code.{user_package_name(folder.ref)}", "process", "process"]' in index
    # The same code gives the same package; a change of it changes the package's hash.
    assert build_lambda_package(Function.PROCESSOR, user_code=[folder]).sha256 == package.sha256
    changed = _folder("processor", "s1", {**code, "helpers.py": code["helpers.py"] + b"# v2\n"})
    assert build_lambda_package(Function.PROCESSOR, user_code=[changed]).sha256 != package.sha256
    # Code that is not what the plan referenced is refused (the store changed under it).
    tampered = UserCodeFolder(folder.ref, {**code, "process.py": b"def process(event):\n    return {}\n"})
    with pytest.raises(PackagingError, match="not the code the plan referenced"):
        build_lambda_package(Function.PROCESSOR, user_code=[tampered])
    with pytest.raises(PackagingError, match="line 1|invalid syntax"):
        build_lambda_package(Function.PROCESSOR, user_code=[_folder("processor", "s1", {"process.py": b"def process(:\n"})])
    with pytest.raises(PackagingError, match="needs one of processor, user-processor"):
        build_lambda_package(Function.PERSISTER, user_code=[folder])
    with pytest.raises(PackagingError, match="has no entry in packaging.REQUIREMENTS"):
        build_azure_app_package("app", [Function.USER_PROCESSOR],
                                user_code=[_folder("processor", "s1", {"process.py": b"import numpy\ndef process(e):\n  return e\n"})])
    with pytest.raises(PackagingError, match="runtime lacks"):
        build_lambda_package(Function.PROCESSOR, user_code=[
            _folder("processor", "s1", {"process.py": b"import azure.cosmos\ndef process(e):\n  return e\n"})])
    with pytest.raises(PackagingError, match="runs users' code, and none"):
        build_lambda_package(Function.EVENT_ACTION)


def test_one_azure_app_carries_every_devices_code_once_per_distinct_folder() -> None:
    default = {"process.py": b"def process(event):\n    return event\n"}
    own = {"process.py": b"def process(event):\n    event['x'] = 1\n    return event\n"}
    action = _folder("event-action", "alert", {"action.py": b"def action(event):\n    return 1\n"},
                     path="azure_functions/event_actions/alert", entry=("action", "action"))
    folders = [_folder("processor", "s1", own, path="azure_functions/processors/s1"),
               _folder("processor", "s2", default, path="azure_functions/processors/default_processor"),
               _folder("processor", "s3", default, path="azure_functions/processors/default_processor"), action]
    package = build_azure_app_package("user-app", [Function.USER_PROCESSOR, Function.EVENT_ACTION], user_code=folders)
    names = _zip(package.data).namelist()
    # s2 and s3 share the default folder: one copy.
    assert len({n.split("/")[1] for n in names if n.startswith("user_code/c")}) == 3
    assert "azure-functions>=1.24,<2" in package.requirements
    index = _zip(package.data).read("user_code/__init__.py").decode()
    assert '"alert": [' in index and '"s3": [' in index


def test_unknown_or_unimplemented_functions_are_refused_by_name() -> None:
    with pytest.raises(PackagingError, match="unknown payload function 'nope'"):
        build_lambda_package("nope")
    with pytest.raises(PackagingError, match="adt-pusher has no aws implementation"):
        build_lambda_package(Function.ADT_PUSHER)
    with pytest.raises(PackagingError, match="no functions"):
        build_azure_app_package("app", [])
    action = HostedFunction(name="event-action-x", package="event-action", trigger="http", auth_level="function",
                            user_function="x")
    app = FunctionAppConfig(name="x", resource_group="rg", location="westeurope", plan="p", plan_sku="Y1",
                            runtime=FunctionRuntime(name="python", version="3.11"), identity="i", storage_account="s",
                            functions=(action,), app_settings={})
    with pytest.raises(PackagingError, match="event-action runs users' code, and none"):
        build_for_resource("function-app", "x", app)


def test_plan_resources_build(tmp_path: Path) -> None:
    from test_payload_contracts import PLANS

    seen: dict[str, str] = {}
    for _, plan in PLANS[:16]:
        for r in plan.resources:
            if isinstance(r.config, LambdaConfig) and r.config.package in AWS_ALL:
                seen[r.id] = build_for_resource(r.kind, r.name, r.config).sha256
            if isinstance(r.config, FunctionAppConfig) and all(f.package in AZURE_ALL for f in r.config.functions):
                seen[r.id] = build_for_resource(r.kind, r.name, r.config).sha256
    assert len(seen) > 10


def test_generated_app_is_served_by_the_local_host(tmp_path: Path) -> None:
    """The project's local Functions host loads the generated app and routes to our functions."""
    import urllib.error
    import urllib.request

    from local_host import LocalHost

    root = _extract(build_azure_app_package("l0", [Function.HOT_WRITER, Function.ADT_PUSHER]).data, tmp_path / "app")
    info = '{"twin_name":"t","mode":"DEBUG","hot_storage_days":1,"cold_storage_days":1,"providers":{}}'
    environ = {str(Setting.INTER_CLOUD_TOKEN): "tok", str(Setting.DIGITAL_TWIN_INFO): info}
    host = LocalHost(app_dir=root, state_dir=tmp_path / "state", port=0, function_key="k", environ=environ)
    host.start()
    try:
        def post(route: str, token: str | None) -> tuple[int, dict]:
            headers = {"Content-Type": "application/json", **({"X-Inter-Cloud-Token": token} if token else {})}
            req = urllib.request.Request(f"{host.base_url}/api/{route}", data=b'{"device_id": "d", "telemetry": {}}',
                                         headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        assert post(str(Function.HOT_WRITER), None) == (401, {"error": "missing or invalid X-Inter-Cloud-Token"})
        status, body = post(str(Function.ADT_PUSHER), "tok")
        assert status == 503 and str(Setting.ADT_INSTANCE_URL) in body["error"]
    finally:
        host.stop()


def test_user_code_runs_from_the_packages_alone(tmp_path: Path) -> None:
    """The Azure user-functions app and an AWS event-action Lambda, each unpacked and run in a
    fresh interpreter: the user's modules load from the package (relative imports included), a
    device without code is a 404, the original `lambda_handler(event, context)` form runs."""
    process = _folder("processor", "s1", {
        "process.py": b"from .scale import factor\n\ndef process(event):\n"
                      b"    event['temperature'] = event['temperature'] * factor()\n    return event\n",
        "scale.py": b"def factor():\n    return 2\n"}, path="azure_functions/processors/s1")
    legacy = _folder("event-action", "alert", {
        "lambda_function.py": b"def lambda_handler(event, context):\n    return {'rule': event['e']['condition'], "
                              b"'context': context}\n"},
        path="lambda_functions/event_actions/alert", entry=("lambda_function", "lambda_handler"))
    app = build_azure_app_package("user-app", [Function.USER_PROCESSOR, Function.EVENT_ACTION],
                                  user_code=[process, legacy])
    root = _extract(app.data, tmp_path / "azure")
    result = _run_isolated(root, (
        "import os, json\n"
        "os.environ['DIGITAL_TWIN_INFO'] = json.dumps({'twin_name': 't', 'mode': 'DEBUG', 'hot_storage_days': 1,"
        " 'cold_storage_days': 1, 'providers': {}})\n"
        "import azure.functions as func\n"
        "import function_app\n"
        "fns = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}\n"
        "def call(name, body, params=None):\n"
        "    res = fns[name](func.HttpRequest('POST', '/api/' + name, body=json.dumps(body).encode(),"
        " params=params or {}))\n"
        "    return [res.status_code, json.loads(res.get_body())]\n"
        "RESULT = [call('user-processor', {'iotDeviceId': 's1', 'time': '2025-01-01T00:00:00Z', 'temperature': 21}),\n"
        "          call('user-processor', {'iotDeviceId': 's2', 'temperature': 21}),\n"
        "          call('event-action', {'e': {'condition': 'a.b.c > DOUBLE(1)'}}, {'name': 'alert'}),\n"
        "          call('event-action', {'e': {}}, {'name': 'other'})]\n"
    ))
    processed, unknown, ran, missing = result
    assert processed[0] == 200 and processed[1]["temperature"] == 42 and processed[1]["iotDeviceId"] == "s1"
    assert unknown[0] == 404 and "has no processor of its own" in unknown[1]["error"]
    assert ran == [200, {"action": "alert", "result": {"rule": "a.b.c > DOUBLE(1)", "context": None}}]
    assert missing[0] == 404
    lam = build_lambda_package(Function.EVENT_ACTION, user_code=[legacy])
    root = _extract(lam.data, tmp_path / "aws")
    result = _run_isolated(root, (
        "import lambda_function\n"
        "RESULT = lambda_function.handler({'e': {'condition': 'x'}, 'reading': {}}, 'ctx')\n"))
    assert result == {"action": "alert", "result": {"rule": "x", "context": "ctx"}}
