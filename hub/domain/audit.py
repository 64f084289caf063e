"""The audit log's hash chain and its verification.

Each entry holds ids, hashes and reasons only, never personal data. Its hash
is SHA-256 over the previous entry's hash followed by a canonical JSON
encoding of the entry (sequence included), so editing, deleting or
reordering any entry breaks every hash after it. Checkpoints signed by the
hub pin (sequence, hash) pairs: truncating the log below the last checkpoint,
or rewriting the whole chain after an edit, is detected against them.
Truncation after the last checkpoint cannot be told apart from a log that
simply ended there: checkpoints are taken every SPEHUB_AUDIT_CHECKPOINT_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

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


def verify_log(
    entries: Iterable[AuditEntry],
    checkpoints: Iterable[Checkpoint],
    check_signature: Callable[[Checkpoint], bool],
) -> tuple[int, list[str]]:
    """Walk the chain and the checkpoints. Returns (entries checked, problems found).

    Problems name sequence numbers only. An empty list means the log is intact
    up to its last entry and consistent with every checkpoint.
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
    for cp in checkpoints:
        if not check_signature(cp):
            problems.append(f"checkpoint at {cp.seq}: signature does not verify")
        if cp.seq > last_seq:
            problems.append(f"checkpoint at {cp.seq}: the log ends at {last_seq} (truncated)")
        elif by_seq.get(cp.seq) != cp.hash:
            problems.append(
                f"checkpoint at {cp.seq}: the entry there has another hash (the log was rewritten)"
            )
    return count, problems
