"""Signed envelopes: the checks made before and by signature verification.

Verify, then parse (sigstore's rule): an envelope's signer, key and signing
time are checked against the directory and the signature is verified over the
exact received bytes before the payload is parsed at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spehub.v1 import envelope_pb2

from hub.domain import signing
from hub.domain.directory import Directory, Participant, ParticipantKind, SigningKey
from hub.domain.records import ParsedRecord, PayloadKind, Reason, RecordRejection, parse

MAX_SIGNATURE_BYTES = 80  # a DER ECDSA P-256 signature is at most 72 bytes

# Who may publish what: candidates' records come from the SPE that holds them;
# offers from any service recruiting (EU agencies, and African SPEs for
# mobility within Africa); operators publish nothing.
PUBLISHERS: dict[PayloadKind, frozenset[ParticipantKind]] = {
    PayloadKind.CANDIDATE_PROFILE: frozenset({ParticipantKind.ORIGIN_SPE}),
    PayloadKind.PERSONAL_DETAILS: frozenset({ParticipantKind.ORIGIN_SPE}),
    PayloadKind.CONSENT: frozenset({ParticipantKind.ORIGIN_SPE}),
    PayloadKind.JOB_OFFER: frozenset({ParticipantKind.ORIGIN_SPE, ParticipantKind.DESTINATION_AGENCY}),
    PayloadKind.MOBILITY_EVENT: frozenset({ParticipantKind.ORIGIN_SPE, ParticipantKind.DESTINATION_AGENCY}),
}


@dataclass(frozen=True)
class Envelope:
    """A SignedEnvelope as received, fields copied out of the wire message."""

    payload: bytes
    payload_type: int
    signer_id: str
    key_id: str
    signature: bytes
    signed_at_seconds: int
    signed_at_nanos: int
    has_signed_at: bool = True

    @property
    def signed_at(self) -> datetime:
        return datetime.fromtimestamp(self.signed_at_seconds, UTC) + timedelta(
            microseconds=self.signed_at_nanos // 1000
        )

    def signing_input(self, kind: PayloadKind) -> bytes:
        """The bytes the signature must cover."""
        return signing.signing_input(
            kind.value,
            self.signer_id,
            self.key_id,
            self.signed_at_seconds,
            self.signed_at_nanos,
            self.payload,
        )


def precheck(
    env: Envelope, caller: Participant | None, directory: Directory, now: datetime, skew: timedelta
) -> tuple[PayloadKind, SigningKey]:
    """Check everything but the signature itself. Returns the payload kind and the key to verify with.

    Raises RecordRejection with the reason; checked in this order: envelope
    complete, payload type known, signer is the caller (when a caller is
    given: offline verification has none), key registered, key valid at the
    signing time.
    """
    if not env.signature or len(env.signature) > MAX_SIGNATURE_BYTES:
        raise RecordRejection(Reason.INVALID_ENVELOPE, "signature is missing or too long", "signature")
    if not env.has_signed_at or not 0 <= env.signed_at_nanos < 1_000_000_000:
        raise RecordRejection(Reason.INVALID_ENVELOPE, "signed_at is missing or invalid", "signed_at")
    if not env.payload:
        raise RecordRejection(Reason.INVALID_ENVELOPE, "payload is empty", "payload")
    kind = PayloadKind.from_payload_type(env.payload_type)
    if kind is None:
        raise RecordRejection(
            Reason.UNKNOWN_PAYLOAD_TYPE,
            f"payload_type {env.payload_type} is unspecified or unknown to this hub",
            "payload_type",
        )
    if caller is not None and env.signer_id != caller.id:
        raise RecordRejection(
            Reason.SIGNER_NOT_CALLER,
            f"signer {env.signer_id!r} is not the connection's participant {caller.id!r}; "
            "each participant publishes only what it signed",
            "signer_participant_id",
        )
    if caller is not None and caller.kind not in PUBLISHERS[kind]:
        raise RecordRejection(
            Reason.TYPE_NOT_ALLOWED,
            f"a {caller.kind.value} participant may not publish {kind.value} records",
            "payload_type",
        )
    key = directory.key(env.signer_id, env.key_id)
    if key is None:
        raise RecordRejection(
            Reason.UNKNOWN_KEY,
            f"key {env.key_id!r} is not registered for {env.signer_id!r}; register it in the directory first",
            "key_id",
        )
    try:
        signed_at = env.signed_at
    except (OverflowError, OSError, ValueError):
        raise RecordRejection(Reason.INVALID_ENVELOPE, "signed_at is out of range", "signed_at") from None
    if signed_at > now + skew:
        raise RecordRejection(
            Reason.INVALID_ENVELOPE, "signed_at is in the future beyond the allowed clock skew", "signed_at"
        )
    if key.revoked:
        raise RecordRejection(
            Reason.KEY_REVOKED,
            f"key {env.key_id!r} of {env.signer_id!r} was revoked; sign with a current key",
            "key_id",
        )
    if not key.valid_at(signed_at):
        raise RecordRejection(
            Reason.KEY_NOT_VALID, f"key {env.key_id!r} was not valid at the signing time", "key_id"
        )
    return kind, key


def verify(env: Envelope, kind: PayloadKind, key: SigningKey, *, allow_high_s: bool = False) -> None:
    """Verify the signature over the exact received bytes. Raises RecordRejection(SIGNATURE_INVALID).

    A valid signature in its high-S form is refused unless ``allow_high_s`` (an envelope signed
    before the low-S rule, read from a store or a file; docs/signing.md)."""
    if not signing.verify(key.public_key, env.signature, env.signing_input(kind), allow_high_s=True):
        raise RecordRejection(
            Reason.SIGNATURE_INVALID,
            "signature does not verify over the received bytes (payload altered, or signed with another key)",
            "signature",
        )
    if not allow_high_s and signing.high_s(env.signature):
        raise RecordRejection(
            Reason.SIGNATURE_INVALID,
            "signature is in its high-S form (s > n/2): valid ECDSA, but a signature has one encoding "
            "here; sign again with a current client, or replace s by n - s (docs/signing.md)",
            "signature",
        )


def open_envelope(env: Envelope, directory: Directory, now: datetime, skew: timedelta) -> ParsedRecord:
    """Offline verification, as any recipient does it: key, signature, then parse and validate.

    A high-S signature passes here: the hub stored and delivers envelopes signed before it refused
    them (``spe-hub verify`` says so; signing.high_s). Returns the verified record's identity.
    Raises RecordRejection.
    """
    kind, key = precheck(env, None, directory, now, skew)
    verify(env, kind, key, allow_high_s=True)
    rec = parse(kind, env.payload)
    check_origin(rec, env)
    return rec


def check_origin(rec: ParsedRecord, env: Envelope) -> None:
    """A record is signed by its origin. Raises RecordRejection(ORIGIN_NOT_SIGNER)."""
    if rec.origin_id != env.signer_id:
        raise RecordRejection(
            Reason.ORIGIN_NOT_SIGNER,
            f"record origin {rec.origin_id!r} is not its signer {env.signer_id!r}",
            "header.origin_participant_id",
        )


def envelope_from_proto(msg: envelope_pb2.SignedEnvelope) -> Envelope:
    return Envelope(
        payload=msg.payload,
        payload_type=msg.payload_type,
        signer_id=msg.signer_participant_id,
        key_id=msg.key_id,
        signature=msg.signature,
        signed_at_seconds=msg.signed_at.seconds,
        signed_at_nanos=msg.signed_at.nanos,
        has_signed_at=msg.HasField("signed_at"),
    )
