"""``spe-hub verify FILE``: check a signed envelope offline, as any recipient can.

The file holds one spehub.v1.SignedEnvelope, binary or in protobuf JSON. The
directory (registry file) supplies the signer's public key; nothing is fetched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from spehub.v1 import envelope_pb2

from hub.domain import signing
from hub.domain.directory import Directory
from hub.domain.envelopes import envelope_from_proto, open_envelope
from hub.domain.records import ParsedRecord, RecordRejection
from hub.errors import HubError


class VerificationFailed(HubError):
    """The envelope did not verify; the message says why."""


def read_envelope(path: Path) -> envelope_pb2.SignedEnvelope:
    """Read a SignedEnvelope from binary protobuf or protobuf JSON. Raises VerificationFailed."""
    data = path.read_bytes()
    msg = envelope_pb2.SignedEnvelope()
    try:
        if data.lstrip().startswith(b"{"):
            json_format.Parse(data.decode("utf-8"), msg)
        else:
            msg.ParseFromString(data)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"{path}: not a spehub.v1.SignedEnvelope ({type(exc).__name__})") from exc
    return msg


def verify_file(path: Path, directory: Directory, now: datetime | None = None) -> ParsedRecord:
    """Verify the envelope in ``path`` against ``directory``. Returns the verified record's identity.

    Raises VerificationFailed naming the reason and field.
    """
    msg = read_envelope(path)
    try:
        return open_envelope(
            envelope_from_proto(msg), directory, now or datetime.now(UTC), timedelta(minutes=5)
        )
    except RecordRejection as exc:
        where = f" ({exc.field})" if exc.field else ""
        raise VerificationFailed(f"{path}: {exc.reason.value}{where}: {exc.message}") from exc


def high_s_note(path: Path) -> str | None:
    """What to say of a valid envelope whose signature is in its high-S form, else None: it was
    signed before the low-S rule, and the hub now refuses such a signature on Publish."""
    if not signing.high_s(read_envelope(path).signature):
        return None
    return (
        "note: the signature is in its high-S form (s > n/2), as clients before the low-S rule made "
        "half of theirs; it verifies, but the hub refuses it on a new Publish (docs/signing.md)"
    )
