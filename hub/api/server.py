"""The gRPC server: real mTLS, health checking, reflection, message limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
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
class TlsMaterial:
    """PEM bytes for the server's TLS: its key and chain, and the CAs of client certificates."""

    server_key: bytes
    server_chain: bytes
    client_ca: bytes


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float) -> None:
        """Mark NOT_SERVING, refuse new RPCs and let in-flight ones finish for ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


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
) -> RunningServer:
    """Start serving on ``address`` (port 0 picks a free port). Returns the bound port.

    Raises RuntimeError if the address cannot be bound.
    """
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        interceptors=[HubInterceptor(authenticator, metrics, limits)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
            # Long-lived connections (a TLS handshake costs ~2.3 ms): keep them alive.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
        ],
        maximum_concurrent_rpcs=workers,
    )
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(directory, server)
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(exchange, server)
    pool_pb2_grpc.add_PoolServiceServicer_to_server(pool, server)
    delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(delivery, server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server)
    mobility_pb2_grpc.add_MobilityServiceServicer_to_server(mobility, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    credentials = grpc.ssl_server_credentials(
        [(tls.server_key, tls.server_chain)], root_certificates=tls.client_ca, require_client_auth=True
    )
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    server.start()
    return RunningServer(server, port, health_servicer)
