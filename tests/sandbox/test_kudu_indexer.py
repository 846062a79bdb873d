"""The static indexer Kudu uses to list a v2 Python app's functions from its zip."""

from __future__ import annotations

import io
import zipfile

import pytest

from sandbox.kudu.indexer import IndexingError, index_zip


def _index(files: dict[str, str | bytes]) -> dict[str, tuple[str, str, str | None]]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        return {f.name: (f.trigger, f.param, f.route) for f in index_zip(zf)}


def test_triggers_names_and_routes() -> None:
    got = _index(
        {
            "function_app.py": """
import azure.functions as func
app = func.FunctionApp()

@app.function_name("Receiver")
@app.route("ingest/{id}", methods=["POST"])
def receive(request):
    pass

@app.schedule(schedule="0 0 * * * *", arg_name="tick", run_on_startup=False)
async def hourly(tick):
    pass

@app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
def on_queue(msg):
    pass

@app.generic_trigger(arg_name="ev", type="kafkaTrigger", name="ev")
def on_kafka(ev):
    pass

@other.route(route="not-ours")
def not_registered(req):
    pass

def plain():
    pass
"""
        }
    )
    assert got == {
        "Receiver": ("httpTrigger", "req", "ingest/{id}"),
        "hourly": ("timerTrigger", "tick", None),
        "on_queue": ("queueTrigger", "msg", None),
        "on_kafka": ("kafkaTrigger", "ev", None),
    }


def test_asgi_app_and_blueprint_from_site_packages() -> None:
    got = _index(
        {
            "function_app.py": """
import azure.functions as func
from fastapi import FastAPI
from shared_funcs.health import bp

api = FastAPI()
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)
""",
            ".python_packages/lib/site-packages/shared_funcs/__init__.py": "",
            ".python_packages/lib/site-packages/shared_funcs/health.py": """
import azure.functions as func
bp = func.Blueprint()

@bp.route(route="health")
def health(req):
    pass
""",
        }
    )
    assert got == {
        "http_app_func": ("httpTrigger", "req", "/{*route}"),
        "health": ("httpTrigger", "req", "health"),
    }


def test_relative_and_module_imports_of_blueprints() -> None:
    got = _index(
        {
            "function_app.py": """
import azure.durable_functions as df
import pkg.a as mod_a
import pkg.b
app = df.DFApp()
app.register_functions(mod_a.bp)
app.register_blueprint(pkg.b.bp)
""",
            "pkg/__init__.py": "",
            "pkg/a.py": """
import azure.durable_functions as df
from .b import helper
bp = df.Blueprint()

@bp.entity_trigger(context_name="ctx")
def counter(ctx):
    pass
""",
            "pkg/b.py": """
import azure.functions as func
bp = func.Blueprint()
def helper():
    pass

@bp.blob_trigger(arg_name="blob", path="c/{name}", connection="X")
def on_blob(blob):
    pass
""",
        }
    )
    assert got == {"counter": ("entityTrigger", "ctx", None), "on_blob": ("blobTrigger", "blob", None)}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "function_app.py": "import azure.functions as func\napp = func.FunctionApp()\n"
                "@app.route(route='a')\ndef a(req): pass\n@app.function_name(name='a')\n@app.route(route='b')\ndef b(req): pass\n"
            },
            "Function a does not have a unique function name",
        ),
        (
            {
                "function_app.py": "import azure.functions as func\nfrom missing.mod import bp\n"
                "app = func.FunctionApp()\napp.register_functions(bp)\n"
            },
            "cannot find the module of blueprint 'bp'",
        ),
        ({"function_app.py": "def (:\n"}, "SyntaxError in function_app.py line 1"),
        ({"function_app.py": b"app = 1\n\xff\xfe\x00bad"}, "function_app.py is not UTF-8 text"),
    ],
)
def test_indexing_errors_name_the_reason(files: dict[str, str | bytes], message: str) -> None:
    with pytest.raises(IndexingError) as err:
        _index(files)
    assert message in str(err.value)
