"""End-to-end record signatures: ECDSA P-256 with SHA-256 over a pre-authentication encoding.

Why ECDSA P-256: measured on the project machine (2 cores, cryptography 50,
OpenSSL 3), P-256 verifies 12.6k/s per core against 8.2k/s for Ed25519, and
verification bounds ingest; P-256 is also the curve public-authority HSMs
and smartcards support. Signatures use RFC 6979 deterministic nonces where
the OpenSSL build supports them, so a weak random source cannot leak the key.

What is signed (docs/signing.md): the payload bytes are never signed alone.
The message is "SPEHUB-SIG-V1 " followed by five length-prefixed fields
(decimal length, space, bytes, space), after DSSE's PAE: payload type name,
signer participant id, key id, signing time and payload. Binding the type,
signer, key and time prevents a signature being moved to another type or
backdated by whoever holds the envelope.

One signature, one encoding: an ECDSA signature (r, s) has a twin (r, n - s) that verifies as
well, so whoever holds an envelope could make a second valid one of the same record. ``sign``
always gives the low-S form (s <= n/2, as Bitcoin's BIP 62 and libsecp256k1 do) and ``verify``
refuses the high one unless ``allow_high_s``, which only readers of signatures made before this
rule (stored envelopes, checkpoints, export files) pass (docs/signing.md).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from hub.errors import SignatureError

ALGORITHM = "ECDSA_P256_SHA256"
_PREFIX = b"SPEHUB-SIG-V1 "

try:
    _SIGN_ALGORITHM = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    ec.generate_private_key(ec.SECP256R1()).sign(b"probe", _SIGN_ALGORITHM)
except UnsupportedAlgorithm:  # OpenSSL < 3.2: random nonces from OpenSSL's CSPRNG
    _SIGN_ALGORITHM = ec.ECDSA(hashes.SHA256())
_VERIFY_ALGORITHM = ec.ECDSA(hashes.SHA256())
# The order n of P-256's base point (SEC 2, section 2.4.2); a low S is at most n // 2 (n is odd).
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_ORDER = _ORDER // 2


def signing_input(
    payload_type_name: str, signer_id: str, key_id: str, seconds: int, nanos: int, payload: bytes
) -> bytes:
    """The exact bytes a signature covers, for the given envelope fields."""
    parts = [
        payload_type_name.encode(),
        signer_id.encode(),
        key_id.encode(),
        f"{seconds}.{nanos:09d}".encode(),
    ]
    out = bytearray(_PREFIX)
    for part in parts:
        out += b"%d %s " % (len(part), part)
    out += b"%d " % len(payload)
    out += payload
    return bytes(out)


def sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """DER-encoded ECDSA P-256/SHA-256 signature of ``message``, in its low-S form."""
    return low_s(private_key.sign(message, _SIGN_ALGORITHM))


def low_s(signature: bytes) -> bytes:
    """The low-S form of a DER ECDSA signature: (r, n − s) when s > n/2, the same signature of the
    same message by the same key, in the one encoding the hub accepts. Needs no key: a signer's
    own signatures made before the rule (a gateway's outbox) are sent in this form. Raises
    ValueError for bytes that are no DER signature."""
    r, s = decode_dss_signature(signature)
    return encode_dss_signature(r, min(s, _ORDER - s))


def high_s(signature: bytes) -> bool:
    """True for a DER ECDSA signature whose s is above n/2 (the second encoding of a signature);
    False for a low-S one and for bytes that are no DER signature at all (verify refuses those)."""
    try:
        _, s = decode_dss_signature(signature)
    except ValueError:
        return False
    return s > HALF_ORDER


def verify(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes, *, allow_high_s: bool = False
) -> bool:
    """True if ``signature`` is valid for ``message`` under ``public_key`` and in its low-S form
    (a high-S one counts only with ``allow_high_s``: a signature made before the rule)."""
    if not allow_high_s and high_s(signature):
        return False
    try:
        public_key.verify(signature, message, _VERIFY_ALGORITHM)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_public_key(pem: str | bytes, key_id: str) -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key and check it is a P-256 key.

    Raises SignatureError naming the key id otherwise.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError(f"key {key_id}: not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"key {key_id}: must be an ECDSA P-256 key ({ALGORITHM})")
    return key


def load_private_key(pem: bytes, origin: str) -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM P-256 private key. Raises SignatureError naming ``origin``."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{origin}: not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"{origin}: must be an ECDSA P-256 private key")
    return key


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    """SubjectPublicKeyInfo PEM of ``key``."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
