"""Client side: an mTLS channel to the hub, and signing of records into envelopes.

Used by the demo, the tests and (later) the SPE gateway.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import envelope_pb2

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
