"""`agentalign serve`: the gRPC server with PolicyService, TrainingService, health checking and
reflection; token auth, TLS, limits and graceful shutdown.

Plain grpcio: one `grpc.aio` server on an event loop in its own thread; PolicyService runs
as coroutines on that loop, TrainingService as ordinary functions in the server's thread pool
(they block on processes and files); auth is one interceptor; health and reflection are
grpcio's own packages.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentalign.errors import UserError
from agentalign.server.logs import log, setup_json_logs
from agentalign.server.policy import Batcher, Personalities, PolicyServicer
from agentalign.server.training import TrainingServicer
from agentalign.server.v1 import policy_pb2, policy_pb2_grpc, training_pb2, training_pb2_grpc

# One frame is 12 KB raw (64x64x3) or 48 KB as float32; 4 MiB leaves room for 128x128 floats.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
OPEN_TO_ALL = ("/grpc.health.v1.Health/",)  # probes need no token


@dataclass
class ServerConfig:
    personalities: Path
    runs: Path = Path("runs/server")
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
    threads: int | None = None  # onnxruntime intra-op threads (None = one per core)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        self.personalities = Personalities(config.personalities, config.threads)
        self.training = TrainingServicer(config.runs, config.max_runs)
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
        self.batcher = Batcher(config.max_batch, config.batch_window_s)
        self.policy = PolicyServicer(self.personalities, self.batcher,
                                     max_sessions=config.max_sessions,
                                     idle_timeout_s=config.idle_timeout_s)
        self.health = health.aio.HealthServicer()
        limits = [("grpc.max_receive_message_length", config.max_message_bytes),
                  ("grpc.max_send_message_length", config.max_message_bytes)]
        self.grpc = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
            interceptors=[TokenAuth(config.token)] if config.token else [], options=limits,
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
