"""The GCP sandbox's gRPC endpoint: Pub/Sub, Firestore and IAM admin on one insecure port, which is
what `PUBSUB_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` name (and an `IAMClient` channel).

Services are served with grpcio generic handlers and the proto-plus types shipped in the Google
client libraries. Each service's handlers are built on its first call, so starting the sandbox does
not import the generated protos. Every call passes one interceptor, the gRPC twin of the REST
middleware: it records the call in the request log (cloud "gcp", `operation` like
"firestore:Commit", the status as its HTTP equivalent) and injects the profile's faults as
RESOURCE_EXHAUSTED / UNAVAILABLE, which the clients' default retries handle.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from sandbox.gcp.backends import GcpBackends
from sandbox.gcp.common import RPC_CODES, GoogleError

log = logging.getLogger("sandbox.gcp.grpc")

# Full service name -> module whose `handlers(backends)` returns {method: grpc.RpcMethodHandler}.
SERVICES: dict[str, str] = {
    "google.pubsub.v1.Publisher": "sandbox.gcp.pubsub.grpc",
    "google.pubsub.v1.Subscriber": "sandbox.gcp.pubsub.grpc",
    "google.firestore.v1.Firestore": "sandbox.gcp.firestore.grpc",
    "google.iam.admin.v1.IAM": "sandbox.gcp.iam.grpc",
}
_READ_PREFIXES = ("Get", "List", "BatchGet", "Run", "BeginTransaction", "Rollback", "Listen")
_API_NAMES = {"google.pubsub.v1": "pubsub", "google.firestore.v1": "firestore", "google.iam.admin.v1": "iam"}


def abort(context: grpc.ServicerContext, error: GoogleError) -> None:
    context.abort(getattr(grpc.StatusCode, error.status), error.message)


def guarded(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Turn a GoogleError raised by a handler into the gRPC status of the same name."""

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except GoogleError as exc:
            abort(context, exc)

    return run


def guarded_stream(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from fn(request, context)
        except GoogleError as exc:
            abort(context, exc)

    return run


class Pb:
    """(De)serialises a raw protobuf class, for handlers that work on protobufs (`Pb(Commit.pb())`)."""

    def __init__(self, pb_cls: Any) -> None:
        self.pb_cls = pb_cls

    def deserialize(self, data: bytes) -> Any:
        return self.pb_cls.FromString(data)

    @staticmethod
    def serialize(message: Any) -> bytes:
        return bytes(message.SerializeToString())


def unary(fn: Callable[..., Any], request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        guarded(fn), request_deserializer=request_type.deserialize, response_serializer=response_type.serialize
    )


def server_stream(fn: Callable[..., Any], request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(
        guarded_stream(fn), request_deserializer=request_type.deserialize, response_serializer=response_type.serialize
    )


class _LazyServices(grpc.GenericRpcHandler):
    def __init__(self, backends: GcpBackends) -> None:
        self.backends = backends
        self._lock = threading.Lock()
        self._handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = details.method.lstrip("/").partition("/")
        module = SERVICES.get(service)
        if module is None:
            return None
        with self._lock:
            if service not in self._handlers:
                self._handlers[service] = importlib.import_module(module).handlers(self.backends, service)
        return self._handlers[service].get(method)


class _Interceptor(grpc.ServerInterceptor):
    def __init__(self, backends: GcpBackends) -> None:
        self.backends = backends

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        service, _, name = method.lstrip("/").partition("/")
        operation = f"{_API_NAMES.get(service.rsplit('.', 1)[0], service)}:{name}"
        mutating = not name.startswith(_READ_PREFIXES)
        handler = continuation(details)
        if handler is None:
            self._record(method, operation, mutating, "UNIMPLEMENTED", 0.0)
            return None
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary_call(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                outcome = "UNKNOWN"
                try:
                    self._inject(context)
                    response = inner(request, context)
                    outcome = _code_name(context) or "OK"
                    return response
                except BaseException:
                    outcome = _code_name(context) or "UNKNOWN"
                    raise
                finally:
                    self._record(method, operation, mutating, outcome, started)

            return handler._replace(unary_unary=unary_call)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream_call(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                outcome = "UNKNOWN"
                try:
                    self._inject(context)
                    yield from inner_stream(request, context)
                    outcome = _code_name(context) or "OK"
                except BaseException:
                    outcome = _code_name(context) or "UNKNOWN"
                    raise
                finally:
                    self._record(method, operation, mutating, outcome, started)

            return handler._replace(unary_stream=stream_call)
        return handler

    def _inject(self, context: grpc.ServicerContext) -> None:
        injected = self.backends.ctx.faults.injected_status()
        if injected == 429:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Quota exceeded: too many requests. Retry later.")
        elif injected is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")

    def _record(self, method: str, operation: str, mutating: bool, outcome: str, started: float) -> None:
        status = RPC_CODES.get(outcome, (2, 500))[1]
        ms = (time.perf_counter() - started) * 1000 if started else 0.0
        self.backends.ctx.request_log.record(
            "gcp", "POST", f"grpc://{self.backends.grpc_host}{method}", status, ms,
            operation=operation, mutating=mutating,
        )


def _code_name(context: grpc.ServicerContext) -> str | None:
    try:
        code = context.code()  # type: ignore[attr-defined]
    except Exception:
        return None
    if code is None:
        return None
    return str(getattr(code, "name", code))


class GrpcEndpoint:
    """Start with `.start()` (binds 127.0.0.1 on a free port), stop with `.stop()`."""

    def __init__(self, backends: GcpBackends) -> None:
        self.backends = backends
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self.port = 0

    def start(self) -> str:
        self._executor = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="gcp-grpc")
        server = grpc.server(
            self._executor,
            handlers=[_LazyServices(self.backends)],
            interceptors=[_Interceptor(self.backends)],
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.so_reuseport", 0)],
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        host = f"127.0.0.1:{self.port}"
        self.backends.grpc_host = host
        return host

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=1).wait(5)
        executor, self._executor = self._executor, None
        if executor is not None:  # no handler thread outlives the sandbox
            executor.shutdown(wait=True, cancel_futures=True)
