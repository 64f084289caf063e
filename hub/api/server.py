"""The gRPC server (grpc.aio): real mTLS, health checking, reflection, message limits."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_async  # type: ignore[attr-defined]  # not in the stubs
from grpc_reflection.v1alpha import reflection
from spehub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    delivery_pb2,
    delivery_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    mobility_pb2,
    mobility_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
)

from hub.api.connections import ConnectionGuard, connection_cap
from hub.api.identity import Authenticator
from hub.api.interceptor import HubInterceptor
from hub.api.servicers import (
    AuditServicer,
    DeliveryServicer,
    DirectoryServicer,
    ExchangeServicer,
    MobilityServicer,
    PoolServicer,
)
from hub.metrics import HubMetrics
from hub.services.limits import ParticipantLimits

SERVICE_NAMES = (
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
    exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name,
    pool_pb2.DESCRIPTOR.services_by_name["PoolService"].full_name,
    delivery_pb2.DESCRIPTOR.services_by_name["DeliveryService"].full_name,
    mobility_pb2.DESCRIPTOR.services_by_name["MobilityService"].full_name,
)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one process lets connections hold (hub.config: SPEHUB_MAX_CONNECTIONS…)."""

    total: int = 0
    """At most this many at once; 0: derived from the descriptor limit (connections.connection_cap)."""
    per_address: int = 64
    """At most this many from one source address; 0: no cap."""
    handshake_timeout_seconds: int = 10
    idle_seconds: int = 600
    """0: an idle connection is never closed."""

    def options(self) -> list[tuple[str, int]]:
        """grpc's channel arguments for them (the per-address cap is the ConnectionGuard's)."""
        options = [
            ("grpc.max_allowed_incoming_connections", connection_cap(self.total)),
            ("grpc.server_handshake_timeout_ms", self.handshake_timeout_seconds * 1000),
        ]
        if self.idle_seconds:
            options.append(("grpc.max_connection_idle_ms", self.idle_seconds * 1000))
        # No grpc.max_connection_age_ms: it would end a Subscribe stream that is still in use.
        return options


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes for the server's TLS: its key and chain, and the CAs of client certificates."""

    server_key: bytes
    server_chain: bytes
    client_ca: bytes


class RunningServer:
    """The aio server, served by an event loop on a thread of its own.

    Unary methods run on ``executor`` (the loop's default executor too, so that a coroutine's
    blocking store calls share it); streams wait on the loop and hold no thread while idle.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health_async.HealthServicer,
        executor: ThreadPoolExecutor,
        guard: ConnectionGuard | None = None,
    ) -> None:
        self.loop = loop
        self.thread = thread
        self.server = server
        self.port = port
        self.health = health_servicer
        self.executor = executor
        self.guard = guard

    def stop(self, grace: float) -> None:
        """Mark NOT_SERVING, refuse new RPCs and let in-flight ones finish for ``grace`` seconds."""
        if self.loop.is_closed():
            return
        if self.guard is not None:
            self.guard.stop()

        async def shutdown() -> None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)
            # Calls still waiting on a worker thread (a client that gave up) end here, not at exit.
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.executor.shutdown(wait=True)


def start_server(
    address: str,
    tls: TlsMaterial,
    authenticator: Authenticator,
    metrics: HubMetrics,
    limits: ParticipantLimits,
    directory: DirectoryServicer,
    exchange: ExchangeServicer,
    pool: PoolServicer,
    delivery: DeliveryServicer,
    audit: AuditServicer,
    mobility: MobilityServicer,
    workers: int,
    max_message_bytes: int,
    reuse_port: bool = False,
    connections: ConnectionLimits | None = None,
) -> RunningServer:
    """Start serving on ``address`` (port 0 picks a free port). Returns the bound port.

    ``workers`` threads run the unary methods and the streams' store calls; there is no
    server-wide cap on concurrent calls (grpc's ``maximum_concurrent_rpcs`` would let one
    caller's idle streams refuse everybody else): each participant's rate and stream slots
    are its own (hub.services.limits). ``reuse_port``: share the port with the other serving
    processes of the hub (SO_REUSEPORT; hub.supervisor); else binding a port in use fails.
    ``connections``: what connections may hold (default ConnectionLimits()). Raises RuntimeError
    if the address cannot be bound.
    """
    connections = connections or ConnectionLimits()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    thread = threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int, health_async.HealthServicer]:
        server = grpc.aio.server(
            migration_thread_pool=executor,
            interceptors=[HubInterceptor(authenticator, metrics, limits)],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", int(reuse_port)),
                # Long-lived connections (a TLS handshake costs ~2.3 ms): keep them alive.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                *connections.options(),
            ],
        )
        directory_pb2_grpc.add_DirectoryServiceServicer_to_server(directory, server)
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(exchange, server)
        pool_pb2_grpc.add_PoolServiceServicer_to_server(pool, server)
        delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(delivery, server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server)
        mobility_pb2_grpc.add_MobilityServiceServicer_to_server(mobility, server)
        health_servicer = health_async.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        credentials = grpc.ssl_server_credentials(
            [(tls.server_key, tls.server_chain)], root_certificates=tls.client_ca, require_client_auth=True
        )
        try:
            port = server.add_secure_port(address, credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise RuntimeError(f"cannot listen on {address}")
        await server.start()
        return server, port, health_servicer

    try:
        server, port, health_servicer = asyncio.run_coroutine_threadsafe(start(), loop).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        executor.shutdown(wait=False)
        raise
    guard = ConnectionGuard(port, min(connections.per_address, connection_cap(connections.total))).start()
    return RunningServer(loop, thread, server, port, health_servicer, executor, guard)
