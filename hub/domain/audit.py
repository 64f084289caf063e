"""The audit log's hash chain and its verification.

Each entry holds ids, hashes and reasons only, never personal data. Its hash
is SHA-256 over the previous entry's hash followed by a canonical JSON
encoding of the entry (sequence included), so editing, deleting or
reordering any entry breaks every hash after it. Checkpoints signed by the
hub pin (sequence, hash) pairs: truncating the log below the last checkpoint,
or rewriting the whole chain after an edit, is detected against them.
Truncation after the last checkpoint cannot be told apart from a log that
simply ended there: checkpoints are taken every SPEHUB_AUDIT_CHECKPOINT_SECONDS.
Whoever controls the database can also delete the checkpoints after an edit
and have the hub sign the rewritten head: every checkpoint is therefore
delivered to the participants, whose gateways keep it (a witness, as
Certificate Transparency logs are witnessed), and a rewrite before a
witnessed checkpoint is found against their copies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from hub.domain import codes

GENESIS = b"\x00" * 32


class Disclosure(StrEnum):
    """Every audit action by which a candidate's data reaches another participant.

    The one list: the services write these actions when they disclose, and an erasure sends a
    deletion notice to every participant with an entry of any of them (store ``disclosed_to``).
    A new way of disclosing is a new member here, or its recipients are never told to delete.
    """

    SEARCH = "disclose.search"  # a profile on a page of PoolService.SearchProfiles
    GET = "disclose.get"  # a profile by ExchangeService.GetRecord
    MATCH = "disclose.match"  # a profile on a page of PoolService.MatchCandidates
    PERSONAL = "release.personal"  # the personal view, under a contact release


CHECKPOINT_TYPE = "spehub.v1.AuditCheckpoint"
# Checkpoints are kept as envelopes to be delivered: a payload type outside spehub.v1.PayloadType,
# so that no participant's record can ever be one.
CHECKPOINT_PAYLOAD_TYPE = 100


@dataclass(frozen=True)
class AuditDraft:
    """An entry before the log gives it a sequence number and a hash."""

    actor: str
    action: str
    origin_id: str = ""
    payload_type: int = 0
    record_id: str = ""
    version: int = 0
    consent_record_id: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at_us: int
    draft: AuditDraft
    prev_hash: bytes
    hash: bytes


def entry_body(seq: int, at_us: int, d: AuditDraft) -> bytes:
    """The canonical bytes an entry's hash covers (with the previous hash before them)."""
    fields = [
        seq,
        at_us,
        d.actor,
        d.action,
        d.origin_id,
        d.payload_type,
        d.record_id,
        d.version,
        d.consent_record_id,
        d.purpose,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: bytes, seq: int, at_us: int, draft: AuditDraft) -> bytes:
    return hashlib.sha256(prev_hash + entry_body(seq, at_us, draft)).digest()


def checkpoint_payload(seq: int, entry_hash: bytes) -> bytes:
    """What a checkpoint signature covers (inside the signing input of docs/signing.md)."""
    return f"{seq}:{entry_hash.hex()}".encode()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: bytes
    at_us: int
    key_id: str
    signature: bytes


def parse_checkpoint_payload(payload: bytes) -> tuple[int, bytes]:
    """(sequence, entry hash) of a checkpoint payload. Raises ValueError."""
    seq, _, digest = payload.decode("ascii").partition(":")
    entry_hash = bytes.fromhex(digest)
    if not codes.ascii_digits(seq) or len(entry_hash) != 32:
        raise ValueError("not a checkpoint payload")
    return int(seq), entry_hash


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint a participant kept (its gateway's witness file), and which file said so."""

    checkpoint: Checkpoint
    source: str


def verify_log(
    entries: Iterable[AuditEntry],
    checkpoints: Iterable[Checkpoint],
    check_signature: Callable[[Checkpoint], bool],
    witnessed: Iterable[Witnessed] = (),
) -> tuple[int, list[str]]:
    """Walk the chain, the hub's checkpoints and the checkpoints participants kept.
    Returns (entries checked, problems found).

    The hub's checkpoints must verify, follow one another (increasing sequence and time) and
    match the log. A witnessed checkpoint must verify, match the log (else the log was
    rewritten at or before its sequence: the first such sequence is named) and still be among
    the hub's checkpoints. Problems name sequence numbers only. An empty list means the log is
    intact up to its last entry and consistent with every checkpoint, the witnessed included.
    """
    problems: list[str] = []
    by_seq: dict[int, bytes] = {}
    expected_seq, prev = 1, GENESIS
    count = 0
    for e in entries:
        count += 1
        if e.seq != expected_seq:
            problems.append(
                f"entry {e.seq}: expected sequence {expected_seq} (an entry was deleted or reordered)"
            )
        if e.prev_hash != prev:
            problems.append(
                f"entry {e.seq}: does not follow the entry before it (deleted, reordered or edited)"
            )
        if chain_hash(e.prev_hash, e.seq, e.at_us, e.draft) != e.hash:
            problems.append(f"entry {e.seq}: its content does not match its hash (edited)")
        by_seq[e.seq] = e.hash
        prev, expected_seq = e.hash, e.seq + 1
    last_seq = expected_seq - 1
    kept: dict[tuple[int, bytes], Checkpoint] = {}
    previous: Checkpoint | None = None
    for cp in checkpoints:
        kept[(cp.seq, cp.hash)] = cp
        if not check_signature(cp):
            problems.append(f"checkpoint at {cp.seq}: signature does not verify")
        if previous is not None and not (cp.seq > previous.seq and cp.at_us >= previous.at_us):
            problems.append(
                f"checkpoint at {cp.seq}: does not follow the checkpoint at {previous.seq} "
                "(heads must increase, times must not go back)"
            )
        previous = cp
        if cp.seq > last_seq:
            problems.append(f"checkpoint at {cp.seq}: the log ends at {last_seq} (truncated)")
        elif by_seq.get(cp.seq) != cp.hash:
            problems.append(
                f"checkpoint at {cp.seq}: the entry there has another hash (the log was rewritten)"
            )
    agreed = 0  # the last witnessed head the log still matches
    for w in sorted(witnessed, key=lambda w: w.checkpoint.seq):
        cp, where = w.checkpoint, f"checkpoint at {w.checkpoint.seq} witnessed in {w.source}"
        if not check_signature(cp):
            problems.append(f"{where}: signature does not verify with the hub's keys (not the hub's)")
            continue
        if cp.seq > last_seq:
            problems.append(f"{where}: the log ends at {last_seq} (truncated)")
        elif by_seq.get(cp.seq) != cp.hash:
            problems.append(
                f"{where}: entry {cp.seq} has another hash: the log was rewritten at or before entry "
                f"{cp.seq} (after entry {agreed}, the last witnessed head it still matches)"
            )
        else:
            agreed = max(agreed, cp.seq)
        if (cp.seq, cp.hash) not in kept:
            problems.append(f"{where}: the hub no longer holds this checkpoint (deleted)")
    return count, problems
