"""Client side: an mTLS channel to the hub, and signing of records into envelopes.

Used by the demo, the tests and (later) the SPE gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import directory_pb2, directory_pb2_grpc, envelope_pb2

from hub.domain import signing
from hub.domain.records import PayloadKind


def secure_channel(
    target: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    server_name: str = "localhost",
    max_message_bytes: int = 16 * 1024 * 1024,
) -> grpc.Channel:
    """An mTLS channel presenting the participant's client certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    options = [
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    return grpc.secure_channel(target, credentials, options=options)


class HubTokens(grpc.AuthMetadataPlugin):
    """Adds ``authorization: Bearer <token>`` to every call, asking the hub for a new token
    before the current one expires.

    Tokens are obtained on a separate mTLS channel (IssueToken needs no token),
    so that the plugin never calls through the channel it decorates.
    """

    def __init__(self, token_channel: grpc.Channel, scopes: tuple[str, ...] = ()) -> None:
        self._stub = directory_pb2_grpc.DirectoryServiceStub(token_channel)
        self._scopes = list(scopes)
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def token(self) -> str:
        with self._lock:
            if time.time() >= self._refresh_at:
                response = self._stub.IssueToken(
                    directory_pb2.IssueTokenRequest(scopes=self._scopes), timeout=10
                )
                self._token = response.access_token
                lifetime = response.expires_at.seconds - time.time()
                self._refresh_at = time.time() + max(lifetime * 0.8, 1.0)
            return self._token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        if context.method_name == "IssueToken":
            callback((), None)
            return
        try:
            callback((("authorization", f"Bearer {self.token()}"),), None)
        except grpc.RpcError as exc:
            callback((), exc)


def authorized_channel(
    target: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    scopes: tuple[str, ...] = (),
    server_name: str = "localhost",
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """An mTLS channel whose calls carry a hub access token bound to this client certificate.
    ``options``: more channel arguments, e.g. ``("grpc.use_local_subchannel_pool", 1)`` for a
    connection of its own (gRPC shares one between channels to the same address otherwise)."""
    token_channel = secure_channel(target, ca_pem, cert_pem, key_pem, server_name)
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        ),
        grpc.metadata_call_credentials(HubTokens(token_channel, scopes)),
    )
    return grpc.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", server_name), *options]
    )


def seal(
    record: Message,
    kind: PayloadKind,
    signer_id: str,
    key_id: str,
    private_key: ec.EllipticCurvePrivateKey,
    signed_at: datetime,
) -> envelope_pb2.SignedEnvelope:
    """Serialise ``record`` once and sign those bytes into an envelope."""
    payload = record.SerializeToString()
    ts = Timestamp()
    ts.FromDatetime(signed_at)
    message = signing.signing_input(kind.value, signer_id, key_id, ts.seconds, ts.nanos, payload)
    return envelope_pb2.SignedEnvelope(
        payload=payload,
        payload_type=kind.payload_type,  # type: ignore[arg-type]
        signer_participant_id=signer_id,
        key_id=key_id,
        signature=signing.sign(private_key, message),
        signed_at=ts,
    )


def pki_channel(target: str, pki: Path, participant_id: str) -> grpc.Channel:
    """A participant's authorised channel, from its folder of a PKI laid out as hub.pki writes it."""
    folder = pki / "participants" / participant_id
    return authorized_channel(
        target,
        (pki / "ca.pem").read_bytes(),
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    )


def pki_signing_key(pki: Path, participant_id: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A participant's signing key id and private key, from its folder of the PKI. Raises OSError if absent."""
    folder = pki / "participants" / participant_id
    key = signing.load_private_key(
        (folder / "signing-key.pem").read_bytes(), f"signing key of {participant_id}"
    )
    return (folder / "key-id").read_text().strip(), key
