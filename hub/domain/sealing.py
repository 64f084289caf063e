"""Encryption at rest with a data key per candidate (AES-256-GCM, from cryptography).

A candidate's records (profile and personal view) are sealed with the data
key of the consent that governs them. Data keys are kept, wrapped by the
master key, in a key store separate from the main database: destroying a
candidate's data key makes every copy of their sealed records unreadable,
including database backups taken earlier, provided key-store backups are
kept for a shorter time than erasure deadlines allow (docs/consent.md).

A sealed payload is PREFIX, then the consent record id (length-prefixed, so
the key can be found), then the 12-byte nonce and the ciphertext; the key is
the one of (the envelope's origin, that consent). A record another
participant publishes about the candidate (a mobility event recorded by the
offer's origin) is sealed with the candidate's key too: PREFIX_OF, then the
candidate's SPE and the consent record id (each length-prefixed), then the
nonce and the ciphertext. A protobuf message never starts with a 0x00 byte,
so sealed and clear payloads cannot be confused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import HubError

PREFIX = b"\x00SPEHUB-AEAD1\x00"
PREFIX_OF = b"\x00SPEHUB-AEAD2\x00"


class SealingError(HubError):
    """A sealed payload could not be opened (wrong or destroyed key, altered bytes)."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def key_aad(origin_id: str, consent_record_id: str) -> bytes:
    return f"{origin_id}\x00{consent_record_id}".encode()


def wrap(master_key: bytes, data_key: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, aad)


def unwrap(master_key: bytes, wrapped: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(master_key).decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise SealingError(
            "a data key does not unwrap with the master key (wrong SPEHUB_MASTER_KEY_FILE?)"
        ) from None


def seal(
    data_key: bytes, origin_id: str, consent_record_id: str, plaintext: bytes, key_origin: str = ""
) -> bytes:
    """Seal a record of ``origin_id`` with the data key of (``key_origin`` or the record's origin,
    ``consent_record_id``)."""
    nonce = os.urandom(12)
    ref = consent_record_id.encode()
    owner = key_origin or origin_id
    aad = key_aad(owner, consent_record_id)
    head = PREFIX if owner == origin_id else PREFIX_OF + _length_prefixed(owner.encode())
    return head + _length_prefixed(ref) + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def _length_prefixed(value: bytes) -> bytes:
    return bytes([len(value)]) + value


def is_sealed(payload: bytes) -> bool:
    return payload.startswith((PREFIX, PREFIX_OF))


def _fields(payload: bytes, envelope_origin: str) -> tuple[str, str, int]:
    """(key origin, consent record id, where the nonce starts) of a sealed payload."""
    at = len(PREFIX)
    owner = envelope_origin
    if payload.startswith(PREFIX_OF):
        n = payload[at]
        owner = payload[at + 1 : at + 1 + n].decode()
        at += 1 + n
    n = payload[at]
    return owner, payload[at + 1 : at + 1 + n].decode(), at + 1 + n


def sealed_key(payload: bytes, envelope_origin: str) -> tuple[str, str]:
    """The data key a sealed payload of ``envelope_origin``'s envelope needs: (its SPE, consent id)."""
    owner, consent_id, _ = _fields(payload, envelope_origin)
    return owner, consent_id


def sealed_consent_id(payload: bytes) -> str:
    """The consent record id a sealed payload names (to find its data key)."""
    return _fields(payload, "")[1]


def open_sealed(data_key: bytes, origin_id: str, payload: bytes) -> bytes:
    owner, consent_id, start = _fields(payload, origin_id)
    nonce, ciphertext = payload[start : start + 12], payload[start + 12 :]
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, key_aad(owner, consent_id))
    except InvalidTag:
        raise SealingError("a sealed record does not open with its data key (altered?)") from None


def keyed_digest(data_key: bytes, payload: bytes) -> bytes:
    """Digest of a sealed record's clear bytes for duplicate detection; useless once the key is gone."""
    return hmac.new(data_key, payload, hashlib.sha256).digest()


def pseudonym(master_key: bytes, recipient_id: str, origin_id: str, record_id: str) -> str:
    """A recipient's own stable pseudonym for a candidate record (HMAC-SHA256 under a key derived
    from the master key, base64url, 128 bits): two recipients cannot match theirs to each other's."""
    derived = hmac.new(master_key, b"spehub pseudonym v1", hashlib.sha256).digest()
    mac = hmac.new(derived, f"{recipient_id}\x00{origin_id}\x00{record_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")
