"""`agentalign serve`: the gRPC server with PolicyService, TrainingService, health checking and
reflection; token auth, TLS, limits and graceful shutdown.

Plain grpcio: one `grpc.aio` server on an event loop in its own thread; PolicyService runs
as coroutines on that loop, TrainingService as ordinary functions in the server's thread pool
(they block on processes and files); auth is one interceptor; health and reflection are
grpcio's own packages.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import inspect
import os
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentalign.config import (
    Settings,
    above,
    add_config_arguments,
    add_options,
    at_least,
    between,
    load_from_args,
)
from agentalign.errors import UserError
from agentalign.network import is_loopback
from agentalign.server.logs import log, setup_json_logs
from agentalign.server.policy import Batcher, Personalities, PolicyServicer
from agentalign.server.training import TrainingServicer
from agentalign.server.v1 import policy_pb2, policy_pb2_grpc, training_pb2, training_pb2_grpc

# One frame is 12 KB raw (64x64x3) or 48 KB as float32; 4 MiB leaves room for 128x128 floats.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
OPEN_TO_ALL = ("/grpc.health.v1.Health/",)  # probes need no token


@dataclass(frozen=True)
class ServeSettings(Settings):
    """The server's settings; each key is documented in configs/serve.yaml."""

    YAML = "serve"
    personalities: str
    runs: str
    builds: str | None
    host: str
    port: int = field(metadata=between(0, 65535))
    max_sessions: int = field(metadata=at_least(1))
    idle_timeout: float = field(metadata=above(0))
    max_batch: int = field(metadata=at_least(1))
    batch_window_ms: float = field(metadata=at_least(0))
    workers: int = field(metadata=at_least(1))
    max_runs: int = field(metadata=at_least(1))


@dataclass
class ServerConfig:
    personalities: Path
    runs: Path = Path("runs/server")
    builds: Path | None = None  # headless Unity builds runs may launch (--env unity:PATH)
    host: str = "127.0.0.1"
    port: int = 50051  # 0 = any free port (see Server.port)
    token: str | None = None  # bearer token required on every call (but health) when set
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_sessions: int = 256
    idle_timeout_s: float = 300.0
    max_batch: int = 64
    batch_window_s: float = 0.002
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_runs: int = 2
    threads: int | None = None  # onnxruntime intra-op threads per pass (None: cores / workers)
    workers: int = 2  # forward passes that may run at once


def forward_threads(threads: int | None, workers: int) -> int:
    """onnxruntime threads per forward pass: as set, else the cores shared by the workers. Two
    passes on a thread each beat one pass on two threads on a small machine: no intra-op
    hand-offs, and one batch runs while another is being gathered or answered."""
    return threads or max(1, (os.cpu_count() or 1) // max(1, workers))


class TokenAuth(grpc.aio.ServerInterceptor):
    """Every call but health checks must carry `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation: Callable[[Any], Any],
                                details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(OPEN_TO_ALL):
            return await continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(sent.encode(), self.expected):
            return await continuation(details)
        reason = "missing" if not sent else "wrong"
        log("unauthenticated", level="warning", method=details.method, reason=reason)
        message = (f"{reason} token: send metadata 'authorization: Bearer <token>' with the "
                   "server's token")
        handler = await continuation(details)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


class _Unparsed:
    """What a request whose bytes do not parse deserializes to: `RequestGuard` refuses it."""

    def __init__(self, method: str, error: Exception) -> None:
        self.message = (f"the request to {method} does not parse as its message type "
                        f"({type(error).__name__}: {error}); send a serialized request message")


class RequestGuard(grpc.aio.ServerInterceptor):
    """A request whose bytes do not parse is INVALID_ARGUMENT (grpc's own answer is UNKNOWN
    with the decoder's exception): each method's deserializer hands the handler a marker
    instead of raising, and the handler, wrapped here, refuses it."""

    async def intercept_service(self, continuation: Callable[[Any], Any],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse, method = handler.request_deserializer, details.method

        def safe(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as e:  # protobuf's DecodeError, or anything a decoder raises
                return _Unparsed(method, e)

        kind = ("unary_unary" if handler.unary_unary else "unary_stream"
                if handler.unary_stream else "stream_unary" if handler.stream_unary
                else "stream_stream")
        behaviour = getattr(handler, kind)
        wrapped = _guard_stream(behaviour) if handler.request_streaming else _guard(behaviour)
        return handler._replace(request_deserializer=safe, **{kind: wrapped})


def _guard(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """`behaviour` (a unary-request handler of any kind) refusing an unparsed request."""
    if inspect.isasyncgenfunction(behaviour):
        async def async_stream(request: Any, context: Any) -> Any:
            if isinstance(request, _Unparsed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for item in behaviour(request, context):
                yield item
        return async_stream
    if inspect.iscoroutinefunction(behaviour):
        async def coroutine(request: Any, context: Any) -> Any:
            if isinstance(request, _Unparsed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await behaviour(request, context)
        return coroutine
    if inspect.isgeneratorfunction(behaviour):
        def stream(request: Any, context: Any) -> Any:
            if isinstance(request, _Unparsed):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            yield from behaviour(request, context)
        return stream

    def plain(request: Any, context: Any) -> Any:
        if isinstance(request, _Unparsed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return behaviour(request, context)
    return plain


def _guard_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """`behaviour` (a streaming-request handler under grpc.aio) refusing an unparsed request
    when it arrives in the stream."""
    async def checked(requests: Any, context: Any) -> Any:
        async for request in requests:
            if isinstance(request, _Unparsed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            yield request

    if inspect.isasyncgenfunction(behaviour):
        async def async_stream(requests: Any, context: Any) -> Any:
            async for item in behaviour(checked(requests, context), context):
                yield item
        return async_stream

    async def coroutine(requests: Any, context: Any) -> Any:
        return await behaviour(checked(requests, context), context)
    return coroutine


class Server:
    """A started server, its event loop running in a thread; `stop()` shuts it down
    gracefully. `port` is the bound port."""

    def __init__(self, config: ServerConfig) -> None:
        if not is_loopback(config.host) and not config.token:
            raise UserError(f"refusing to serve on {config.host} without a token: anyone who "
                            "can reach it could drive agents and start runs; set a token "
                            "(--token-file or AGENTALIGN_SERVER_TOKEN) or bind 127.0.0.1")
        if (config.tls_cert is None) != (config.tls_key is None):
            raise UserError("TLS needs both --tls-cert and --tls-key")
        self.config = config
        self.personalities = Personalities(config.personalities,
                                           forward_threads(config.threads, config.workers))
        self.training = TrainingServicer(config.runs, config.max_runs,
                                         personalities=config.personalities,
                                         builds=config.builds)
        self.stopped = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc-loop",
                                       daemon=True)
        self.thread.start()
        try:
            self.port = self._call(self._start())
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise
        log("server_started", host=config.host, port=self.port,
            tls=config.tls_cert is not None, auth=bool(config.token),
            personalities=sorted(self.personalities.loaded), max_batch=config.max_batch)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _start(self) -> int:
        config = self.config
        self.batcher = Batcher(config.max_batch, config.batch_window_s, config.workers)
        self.policy = PolicyServicer(self.personalities, self.batcher,
                                     max_sessions=config.max_sessions,
                                     idle_timeout_s=config.idle_timeout_s)
        self.health = health.aio.HealthServicer()
        limits = [("grpc.max_receive_message_length", config.max_message_bytes),
                  ("grpc.max_send_message_length", config.max_message_bytes)]
        self.grpc = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
            interceptors=[*([TokenAuth(config.token)] if config.token else []),
                          RequestGuard()], options=limits,
            maximum_concurrent_rpcs=config.max_sessions + 64)
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(self.policy, self.grpc)
        training_pb2_grpc.add_TrainingServiceServicer_to_server(self.training, self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        services = [policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
                    training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name,
                    health.SERVICE_NAME]
        reflection.enable_server_reflection([*services, reflection.SERVICE_NAME], self.grpc)
        address = f"{config.host}:{config.port}"
        try:
            if config.tls_cert is not None and config.tls_key is not None:
                credentials = grpc.ssl_server_credentials(
                    [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
                port = self.grpc.add_secure_port(address, credentials)
            else:
                port = self.grpc.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise UserError(f"cannot bind {address} (in use or not an address of this host)")
        await self.grpc.start()
        for name in ["", *services[:2]]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let the in-flight ones (and their decisions) finish for up to
        `grace_s`, then stop the batcher and cancel running training runs."""
        if self.stopped:
            return
        self.stopped = True
        log("server_stopping", grace_s=grace_s)
        self.training.close()  # ends the runs, so that their WatchRun streams can finish
        self._call(self._stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        log("server_stopped", batches=self.batcher.batches)

    async def _stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace_s)
        self.policy.close()
        await self.batcher.stop()


def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully; JSON logs on stderr."""
    setup_json_logs()
    server = Server(config)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"serving {len(server.policy.personalities.loaded)} personalities on "
          f"{config.host}:{server.port}", flush=True)
    done.wait()
    server.stop()


OPTIONS = {"personalities": "folder of NAME.onnx + NAME.json (from agentalign export)",
           "runs": "folder of the training runs started through the server",
           "builds": "folder of headless Unity builds that training runs may launch",
           "host": "address to bind", "port": "port to bind",
           "max_sessions": "most open agent sessions",
           "idle_timeout": "seconds before an idle session is closed",
           "max_batch": "most decisions in one pass",
           "batch_window_ms": "how long a decision may wait for others to join its batch",
           "workers": "forward passes at once, each on cores / workers threads"}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The agent server (docs/server.md): play the personalities of a folder for many "
        "sessions, batched; start and watch training runs; gRPC health and reflection. Binds "
        "127.0.0.1 unless a token is set (AGENTALIGN_SERVER_TOKEN or --token-file). JSON logs "
        "on stderr. Defaults: configs/serve.yaml.")
    add_options(parser, ServeSettings, OPTIONS)
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    add_config_arguments(parser)


def serve_from_args(args: argparse.Namespace) -> None:
    settings = load_from_args(ServeSettings, args, OPTIONS)
    token = os.environ.get("AGENTALIGN_SERVER_TOKEN")
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    serve(ServerConfig(
        personalities=Path(settings.personalities), runs=Path(settings.runs),
        builds=Path(settings.builds) if settings.builds else None, host=settings.host,
        port=settings.port, token=token or None, tls_cert=args.tls_cert, tls_key=args.tls_key,
        max_sessions=settings.max_sessions, idle_timeout_s=settings.idle_timeout,
        max_batch=settings.max_batch, batch_window_s=settings.batch_window_ms / 1000.0,
        workers=settings.workers, max_runs=settings.max_runs))
