"""The gateway an SPE runs on its side: national export → signed envelopes → durable outbox → hub,
and back: the SPE's deliveries → verified records → files in its national format.

Every converted record is signed once and its envelope stored in a local
SQLite outbox before anything is sent. Sending takes pending envelopes in
batches over one Publish stream and marks each with the hub's answer; if the
link drops, what was not answered stays pending and the next run sends it
again. A record already stored by the hub comes back DUPLICATE (the bytes are
identical), so an intermittent link loses nothing and duplicates nothing.

Receiving subscribes from the SPE's cursor, verifies each record's signature
end to end against the directory (the hub could not forge it), and writes it
in the national format to a file named by origin, record and version, durably
(written whole, synced, renamed) before acknowledging: a delivery that comes
again after a broken link rewrites the same file, so nothing is lost or
doubled. Withdrawals and deletion notices are listed in notices.csv (ids
only); a deletion removes the gateway's copies and, unless the SPE lets the
gateway confirm it, holds the cursor until the SPE confirms that its own
systems deleted the data too.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from spehub.v1 import (
    common_pb2,
    consent_pb2,
    delivery_pb2,
    delivery_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    envelope_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    offer_pb2,
    profile_pb2,
)
from tqdm import tqdm

from adapters.base import AdapterError, Tally
from adapters.codelists import Resolution, alias_key
from hub.api.client import seal
from hub.api.convert import envelope_from_proto
from hub.domain.directory import Directory
from hub.domain.envelopes import open_envelope
from hub.domain.records import PayloadKind, RecordRejection, message_of
from hub.domain.signing import load_private_key
from hub.entrypoints import csvout
from hub.entrypoints.options import adapter_help, add_hub_option

KIND_BY_MESSAGE = {
    "JobOffer": PayloadKind.JOB_OFFER,
    "CandidateProfile": PayloadKind.CANDIDATE_PROFILE,
    "PersonalDetails": PayloadKind.PERSONAL_DETAILS,
    "Consent": PayloadKind.CONSENT,
}
DONE = ("accepted", "duplicate")


@dataclass(frozen=True)
class FlushReport:
    sent: int
    accepted: int
    duplicate: int
    rejected: int
    pending: int
    link_error: str = ""


class Outbox:
    """The durable queue of signed envelopes waiting for the hub's answer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                payload_type INTEGER NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
                envelope BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending', reason TEXT NOT NULL DEFAULT '',
                UNIQUE (payload_type, record_id, version))"""
        )
        # The content of the newest version of each record the gateway signed: a re-export that
        # changed a row gets the next version, an unchanged row is a no-op.
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS versions (
                payload_type INTEGER NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
                content_sha256 BLOB NOT NULL, PRIMARY KEY (payload_type, record_id)) WITHOUT ROWID"""
        )
        self.db.commit()

    def version_for(self, payload_type: int, record_id: str, given: int, content_sha256: bytes) -> int | None:
        """The version to sign a record's content with, or None when that content is already its
        newest signed version. New content gets the next version (at least ``given``)."""
        row = self.db.execute(
            "SELECT version, content_sha256 FROM versions WHERE payload_type = ? AND record_id = ?",
            (payload_type, record_id),
        ).fetchone()
        if row is not None and row[1] == content_sha256:
            return None
        version = max(given, 1) if row is None else max(given, row[0] + 1)
        self.db.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
            (payload_type, record_id, version, content_sha256),
        )
        return version

    def add(self, envelopes: Iterable[tuple[int, str, int, bytes]]) -> int:
        """Queue envelopes (type, record id, version, bytes); one already queued is kept as it was. Returns how many were new."""
        before = self.db.total_changes
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO outbox (payload_type, record_id, version, envelope) VALUES (?, ?, ?, ?)",
                envelopes,
            )
        return self.db.total_changes - before

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        return self.db.execute(
            "SELECT seq, envelope FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()

    def mark(self, results: Iterable[tuple[int, str, str]]) -> None:
        with self.db:
            self.db.executemany(
                "UPDATE outbox SET state = ?, reason = ? WHERE seq = ?", [(s, r, q) for q, s, r in results]
            )

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())

    def rejected(self) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT record_id, reason FROM outbox WHERE state = 'rejected' ORDER BY seq"
        ).fetchall()

    def close(self) -> None:
        self.db.close()


class ReviewQueue:
    """Records held until a person decides their occupation, and the SPE's aliases (its reviewed
    answers, which win over the resolver), kept beside the outbox. Nothing personal is shown:
    a held record is listed by its location, the field and the occupation's title."""

    def __init__(self, outbox: Outbox) -> None:
        self.db = outbox.db
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS review (
                id INTEGER PRIMARY KEY AUTOINCREMENT, location TEXT NOT NULL, field TEXT NOT NULL,
                title TEXT NOT NULL, lang TEXT NOT NULL DEFAULT '', records BLOB NOT NULL,
                state TEXT NOT NULL DEFAULT 'held', UNIQUE (location, state))"""
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS aliases (key TEXT PRIMARY KEY, title TEXT NOT NULL,"
            " isco08 TEXT NOT NULL, esco_uri TEXT NOT NULL DEFAULT '', at TEXT NOT NULL)"
        )
        self.db.commit()

    def hold(self, held: Iterable[object], lang: str = "") -> int:
        """Keep held records (a source item's records together) until reviewed. Returns how many
        source items are newly held."""
        groups: dict[str, list[object]] = {}
        for converted in held:
            groups.setdefault(converted.location, []).append(converted)  # type: ignore[attr-defined]
        added = 0
        for location, items in groups.items():
            problem = items[0].held  # type: ignore[attr-defined]
            records = [(i.record.DESCRIPTOR.name, i.record.SerializeToString()) for i in items]  # type: ignore[attr-defined]
            # The record with the undecided occupation (a consent may come first in its item).
            title = next((t for i in items if (t := _occupation_title(i.record))), "")  # type: ignore[attr-defined]
            with self.db:
                added += self.db.execute(
                    "INSERT OR REPLACE INTO review (location, field, title, lang, records) VALUES (?, ?, ?, ?, ?)",
                    (
                        location,
                        problem.field,
                        title,
                        lang,
                        json.dumps([[n, base64.b64encode(b).decode()] for n, b in records]).encode(),
                    ),
                ).rowcount
        return added

    def held(self) -> list[tuple[int, str, str, str, str]]:
        """(id, location, field, title, lang) of every record group waiting for review."""
        return self.db.execute(
            "SELECT id, location, field, title, lang FROM review WHERE state = 'held' ORDER BY id"
        ).fetchall()

    def decide(self, review_id: int, isco08: str, esco_uri: str = "") -> list[Message]:
        """A person's answer for a held record: kept as an alias of its title, applied to the held
        records, which are returned (to be signed and queued) and leave the queue. Raises KeyError."""
        row = self.db.execute(
            "SELECT title, lang, records FROM review WHERE id = ? AND state = 'held'", (review_id,)
        ).fetchone()
        if row is None:
            raise KeyError(review_id)
        title, lang, blob = row
        self.add_alias(title, lang, isco08, esco_uri)
        out: list[Message] = []
        for name, data in json.loads(blob):
            record = MESSAGES[name].FromString(base64.b64decode(data))
            for occupation in _unresolved_occupations(record):
                if occupation.title == title:
                    Resolution(isco08, "alias", method="alias", score=1.0).apply(occupation)
            out.append(record)
        with self.db:
            self.db.execute("UPDATE review SET state = 'decided' WHERE id = ?", (review_id,))
        return out

    def add_alias(self, title: str, lang: str, isco08: str, esco_uri: str = "") -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?)",
                (
                    alias_key(title, lang),
                    title,
                    isco08,
                    esco_uri,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )

    def aliases(self) -> dict[str, dict[str, str]]:
        """The alias table, as CodeLists.use_aliases takes it."""
        return {
            key: {"isco08": isco, "esco_uri": esco, "title": title}
            for key, title, isco, esco in self.db.execute("SELECT key, title, isco08, esco_uri FROM aliases")
        }

    def export(self) -> dict[str, object]:
        """The alias table as a file another SPE can import (format 1; version = its size and latest change)."""
        latest = self.db.execute("SELECT COALESCE(MAX(at), '') FROM aliases").fetchone()[0]
        return {"format": 1, "version": f"{len(self.aliases())}@{latest}", "aliases": self.aliases()}

    def import_aliases(self, data: dict[str, object]) -> int:
        """Add another SPE's exported aliases (one already here is kept). Raises ValueError."""
        if data.get("format") != 1 or not isinstance(data.get("aliases"), dict):
            raise ValueError("not an alias file exported by `spe-hub gateway aliases export`")
        mine = self.aliases()
        added = 0
        aliases = data["aliases"]
        assert isinstance(aliases, dict)
        for key, entry in aliases.items():
            isco = str(entry.get("isco08", ""))
            if key in mine or not (isco.isdigit() and 1 <= len(isco) <= 4):
                continue
            lang, _, _ = str(key).partition(":")
            self.add_alias(str(entry.get("title", "")), lang, isco, str(entry.get("esco_uri", "")))
            added += 1
        return added


MESSAGES: dict[str, type[Message]] = {
    "JobOffer": offer_pb2.JobOffer,
    "CandidateProfile": profile_pb2.CandidateProfile,
    "PersonalDetails": profile_pb2.PersonalDetails,
    "Consent": consent_pb2.Consent,
}


def _unresolved_occupations(record: object) -> list[common_pb2.Occupation]:
    if isinstance(record, profile_pb2.CandidateProfile):
        return [o for o in record.occupations if not o.isco08_code]
    if isinstance(record, offer_pb2.JobOffer) and not record.occupation.isco08_code:
        return [record.occupation]
    return []


def _occupation_title(record: object) -> str:
    found = _unresolved_occupations(record)
    return str(found[0].title) if found else ""


class Gateway:
    """Signs and queues an SPE's records, and sends the queue to the hub."""

    def __init__(self, participant_id: str, key_id: str, signing_key_pem: bytes, outbox: Outbox) -> None:
        self.participant_id = participant_id
        self.key_id = key_id
        self.key = load_private_key(signing_key_pem, f"signing key of {participant_id}")
        self.outbox = outbox

    def queue(self, records: Iterable[Any], progress: bool | None = None) -> int:
        """Sign and queue records (in chunks, so memory stays flat). Returns how many were new.

        Versions follow content: a record whose content (all but its version and update time)
        is the newest the gateway signed is skipped and counted in ``unchanged``; changed
        content is signed as the next version, so a corrected re-export is a new version at the
        hub, never a VERSION_CONFLICT."""
        added = 0
        self.unchanged = 0
        chunk: list[tuple[int, str, int, bytes]] = []
        for record in tqdm(
            records, desc="signing", unit="rec", disable=(progress is False and True) or None, file=sys.stderr
        ):
            kind = KIND_BY_MESSAGE[record.DESCRIPTOR.name]
            version = self.outbox.version_for(
                kind.payload_type, record.header.record_id, record.header.version, _content_sha256(record)
            )
            if version is None:
                self.unchanged += 1
                continue
            record.header.version = version
            env = seal(record, kind, self.participant_id, self.key_id, self.key, datetime.now(UTC))
            header = record.header
            chunk.append((kind.payload_type, header.record_id, header.version, env.SerializeToString()))
            if len(chunk) >= 1000:
                added += self.outbox.add(chunk)
                chunk = []
        return added + self.outbox.add(chunk)

    unchanged = 0

    def flush(self, channel: grpc.Channel, batch: int = 200, timeout: float = 60.0) -> FlushReport:
        """Send every pending envelope. Stops at the first link failure, leaving the rest pending."""
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
        sent = 0
        try:
            while True:
                rows = self.outbox.pending(batch)
                if not rows:
                    break
                request = exchange_pb2.PublishRequest(
                    request_id=f"outbox-{rows[0][0]}",
                    envelopes=[envelope_pb2.SignedEnvelope.FromString(blob) for _, blob in rows],
                )
                (response,) = list(stub.Publish(iter([request]), timeout=timeout))
                marks = []
                for (seq, _), result in zip(rows, response.results, strict=True):
                    state = (
                        exchange_pb2.RecordOutcome.Name(result.outcome)
                        .removeprefix("RECORD_OUTCOME_")
                        .lower()
                    )
                    totals[state] += 1
                    reason = (
                        ""
                        if state in DONE
                        else f"{exchange_pb2.RejectionReason.Name(result.reason)}: {result.field}: {result.message}"
                    )
                    marks.append((seq, state, reason))
                self.outbox.mark(marks)
                sent += len(rows)
        except grpc.RpcError as exc:
            return FlushReport(
                sent, **totals, pending=self.outbox.counts().get("pending", 0), link_error=exc.code().name
            )
        return FlushReport(
            sent,
            totals["accepted"],
            totals["duplicate"],
            totals["rejected"],
            pending=self.outbox.counts().get("pending", 0),
        )


@dataclass
class ReceiveReport:
    written: int = 0
    withdrawn: int = 0
    erased: int = 0
    refused: int = 0
    acknowledged: int = 0
    held_deletion: int = 0
    checkpoints: int = 0
    checkpoint_went_back: int = 0
    link_error: str = ""


NOTICE_COLUMNS = ("sequence", "kind", "origin", "payload_type", "record_id", "version", "routed_at", "note")


class Inbox:
    """Where an SPE's deliveries land: one file per record version, in the national format, and a
    notices file. Files are written whole and synced before the delivery is acknowledged."""

    def __init__(self, folder: Path, adapter: object) -> None:
        self.folder = folder
        self.adapter = adapter
        (folder / "records").mkdir(parents=True, exist_ok=True)
        # Which files hold which record, and under which consent (a deletion notice names the consent).
        self.index = sqlite3.connect(folder / "inbox.sqlite3")
        self.index.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, origin TEXT NOT NULL,"
            " record_id TEXT NOT NULL, consent_id TEXT NOT NULL DEFAULT '')"
        )
        # The hub's audit checkpoints this SPE witnessed (also appended to witness.jsonl).
        self.index.execute(
            "CREATE TABLE IF NOT EXISTS witness (sequence INTEGER NOT NULL, entry_hash TEXT NOT NULL,"
            " PRIMARY KEY (sequence, entry_hash))"
        )
        self.index.commit()

    def path_of(self, origin: str, record_id: str, version: int, suffix: str) -> Path:
        # Record ids are [A-Za-z0-9._:-]; ':' is not portable in file names.
        return self.folder / "records" / origin / f"{record_id.replace(':', '_')}.v{version}{suffix}"

    def write_record(self, origin: str, record_id: str, version: int, record: object) -> Path:
        national = self.adapter.write(record)  # type: ignore[attr-defined]
        mapping = getattr(self.adapter, "mapping", None)
        if mapping is not None:  # a tabular SPE: one import row, with its header, in its delimiter
            out = io.StringIO()
            writer = csvout.DictWriter(out, fieldnames=list(national), delimiter=mapping.delimiter or ";")
            writer.writeheader()
            writer.writerow(national)
            data, suffix = out.getvalue().encode("utf-8-sig"), ".csv"
        elif isinstance(national, str):
            data, suffix = national.encode("utf-8"), ".xml"
        else:
            data, suffix = json.dumps(national, ensure_ascii=False, indent=2).encode("utf-8"), ".json"
        path = self.path_of(origin, record_id, version, suffix)
        with self.index:  # indexed first: a file is never on disk without the index knowing it
            self.index.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (str(path), origin, record_id, getattr(record, "consent_record_id", "")),
            )
        _write_durably(path, data)
        return path

    def erase(self, origin: str, record_id: str) -> int:
        """Delete every file the gateway holds of a record, or of a candidate under that consent.
        Returns how many files it removed."""
        rows = self.index.execute(
            "SELECT path FROM files WHERE origin = ? AND (record_id = ? OR consent_id = ?)",
            (origin, record_id, record_id),
        ).fetchall()
        removed = 0
        for (path,) in rows:
            if Path(path).exists():
                Path(path).unlink()
                removed += 1
        with self.index:
            self.index.executemany("DELETE FROM files WHERE path = ?", rows)
        return removed

    def keep_checkpoint(self, cp: delivery_pb2.AuditCheckpoint) -> bool:
        """Append a checkpoint of the hub's audit log to witness.jsonl, durably, once (a delivery
        may come twice). Returns False when its head is below one kept before: the hub's log went
        back, which is exactly what the witness is for (kept all the same, as evidence)."""
        digest = cp.entry_hash.hex()
        (highest,) = self.index.execute("SELECT COALESCE(MAX(sequence), 0) FROM witness").fetchone()
        with self.index:
            added = self.index.execute(
                "INSERT OR IGNORE INTO witness VALUES (?, ?)", (cp.sequence, digest)
            ).rowcount
        if added:
            line = {
                "sequence": cp.sequence,
                "entry_hash": digest,
                "signed_at_us": cp.signed_at.seconds * 1_000_000 + cp.signed_at.nanos // 1000,
                "key_id": cp.key_id,
                "signature": base64.b64encode(cp.signature).decode(),
            }
            with (self.folder / "witness.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return not added or cp.sequence > highest

    def close(self) -> None:
        self.index.close()

    def notice(
        self, delivery: delivery_pb2.Delivery, ref: delivery_pb2.RecordRef, kind: str, note: str
    ) -> None:
        path = self.folder / "notices.csv"
        new = not path.exists()
        with path.open("a", encoding="utf-8", newline="") as handle:
            writer = csvout.Writer(handle)
            if new:
                writer.writerow(NOTICE_COLUMNS)
            writer.writerow(
                (
                    delivery.sequence,
                    kind,
                    ref.origin_participant_id,
                    envelope_pb2.PayloadType.Name(ref.payload_type),
                    ref.record_id,
                    ref.version,
                    delivery.routed_at.ToJsonString(),
                    note,
                )
            )
            handle.flush()
            os.fsync(handle.fileno())


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fetch_directory(
    channel: grpc.Channel, hub_public_key: bytes | None = None, timeout: float = 30.0
) -> Directory:
    """The hub's signed directory export; its signature is checked when the hub's public key is given."""
    from hub.domain import signing
    from hub.services.directory import export_signature_valid

    export = directory_pb2_grpc.DirectoryServiceStub(channel).ExportDirectory(
        directory_pb2.ExportDirectoryRequest(), timeout=timeout
    )
    if hub_public_key is not None:
        key = signing.load_public_key(hub_public_key, export.key_id)
        at = export.signed_at
        if not export_signature_valid(
            key, export.key_id, at.seconds, at.nanos, export.registry_json, export.signature
        ):
            raise ValueError("the directory export's signature does not verify with the hub's public key")
    return Directory.from_dict(json.loads(export.registry_json), origin="hub export")


def receive(
    channel: grpc.Channel,
    inbox: Inbox,
    directory: Directory,
    confirm_deletions: bool | int = False,
    follow: bool = False,
    ack_every: int = 100,
    timeout: float | None = None,
) -> ReceiveReport:
    """Write every delivery waiting for this SPE into ``inbox``, acknowledging as files are durable.

    ``confirm_deletions``: True lets the gateway confirm deletions (its files are the SPE's only copy);
    a sequence number confirms the deletion notice with that number; False holds the cursor before
    the first unconfirmed deletion notice. Stops when drained, unless ``follow``.
    """
    stub = delivery_pb2_grpc.DeliveryServiceStub(channel)
    report = ReceiveReport()
    done = 0  # the last sequence whose delivery is fully handled
    acked = 0
    try:
        stream = stub.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=not follow), timeout=timeout)
        for response in stream:
            d = response.delivery
            if d.kind == delivery_pb2.DELIVERY_KIND_RECORD:
                _receive_record(d, inbox, directory, report)
            elif d.kind == delivery_pb2.DELIVERY_KIND_AUDIT_CHECKPOINT:
                report.checkpoints += 1
                if not inbox.keep_checkpoint(d.checkpoint):
                    report.checkpoint_went_back = d.checkpoint.sequence
            elif d.kind == delivery_pb2.DELIVERY_KIND_WITHDRAWAL:
                inbox.erase(d.withdrawn.origin_participant_id, d.withdrawn.record_id)
                inbox.notice(d, d.withdrawn, "withdrawal", "the origin withdrew the record: files removed")
                report.withdrawn += 1
            elif d.kind == delivery_pb2.DELIVERY_KIND_DELETION:
                removed = inbox.erase(d.erased.origin_participant_id, d.erased.record_id)
                confirmed = confirm_deletions is True or confirm_deletions == d.sequence
                inbox.notice(
                    d,
                    d.erased,
                    "deletion",
                    f"erasure: {removed} file(s) removed here"
                    + ("" if confirmed else "; delete it in your systems, then confirm this sequence"),
                )
                if not confirmed:
                    report.held_deletion = d.sequence
                    stream.cancel()  # type: ignore[no-untyped-call]
                    break
                report.erased += 1
            done = d.sequence
            if done - acked >= ack_every:
                stub.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=done), timeout=30)
                acked = done
                report.acknowledged = acked
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED or not report.held_deletion:
            report.link_error = exc.code().name
    if done > acked:
        try:
            stub.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=done), timeout=30)
            report.acknowledged = done
        except grpc.RpcError as exc:  # not acknowledged: they come again and rewrite the same files
            report.link_error = report.link_error or exc.code().name
    return report


def _receive_record(
    d: delivery_pb2.Delivery, inbox: Inbox, directory: Directory, report: ReceiveReport
) -> None:
    env = envelope_from_proto(d.envelope)
    ref = delivery_pb2.RecordRef(
        origin_participant_id=d.envelope.signer_participant_id, payload_type=d.envelope.payload_type
    )
    try:
        parsed = open_envelope(env, directory, datetime.now(UTC), timedelta(minutes=5))
    except RecordRejection as exc:
        # Not written: a record whose origin's signature fails is not the origin's record.
        inbox.notice(d, ref, "refused", f"{exc.reason.value}: {exc.message}")
        report.refused += 1
        return
    record = message_of(parsed.kind, env.payload)
    inbox.write_record(parsed.origin_id, parsed.record_id, parsed.version, record)
    report.written += 1


def _content_sha256(record: Any) -> bytes:
    """SHA-256 of a record's content: its deterministic bytes without version and update time."""
    copy = type(record)()
    copy.CopyFrom(record)
    copy.header.ClearField("version")
    copy.header.ClearField("updated_at")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def converted_records(
    results: Iterable[object],
    report: list[str],
    held: list[object] | None = None,
    tally: Tally | None = None,
) -> Iterator[object]:
    """The records of an adapter's output that may be published; problems go to ``report``,
    records held for review (an occupation a person must decide) to ``held``, records kept local
    (no consent) nowhere: neither is ever published. ``tally`` counts the rows."""
    seen: dict[str, str] = {}
    tally = tally if tally is not None else Tally()
    shown: set[str] = set()  # a row's problems, once, though each of its records carries them
    for converted in results:
        location = converted.location  # type: ignore[attr-defined]
        if location not in seen:
            shown.clear()
        for problem in map(str, converted.problems):  # type: ignore[attr-defined]
            if problem not in shown:
                shown.add(problem)
                report.append(problem)
        if converted.record is None:  # type: ignore[attr-defined]
            tally.count(location, "refused", seen)
            continue
        if converted.local is not None:  # type: ignore[attr-defined]
            tally.count(location, "local", seen)
            continue
        tally.count(location, "held" if converted.held is not None else "ok", seen)  # type: ignore[attr-defined]
        if converted.held is not None:  # type: ignore[attr-defined]
            if held is not None:
                held.append(converted)
            continue
        yield converted.record  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    """``spe-hub gateway send``: convert, sign and queue the files, then send the queue."""
    from hub.entrypoints.adapters import build_adapter, load_codelists

    a = args
    adapter = None
    if a.files:
        lists = load_codelists(a.codelists)
        if lists is None:
            return 2
        key = base64.b64decode(Path(a.subject_key_file).read_text().strip()) if a.subject_key_file else b""
        try:
            adapter = build_adapter(
                a.adapter, lists, a.participant, a.offer_target, a.mapping, key, a.country
            )
        except AdapterError as exc:
            print(f"spe-hub gateway: {exc}", file=sys.stderr)
            return 2
    folder = Path(a.pki) / "participants" / a.participant
    try:
        key_id, signing_key = (
            (folder / "key-id").read_text().strip(),
            (folder / "signing-key.pem").read_bytes(),
        )
    except OSError:
        print(f"spe-hub gateway: no signing key of {a.participant} in {folder} (see --pki)", file=sys.stderr)
        return 2
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    gateway = Gateway(a.participant, key_id, signing_key, outbox)
    review = ReviewQueue(outbox)
    report: list[str] = []
    refused_rows = 0
    if adapter is not None and lists is not None:
        lists.use_aliases(review.aliases())  # the SPE's reviewed answers win over the resolver
        for name in a.files:
            held: list[object] = []
            tally = Tally()
            try:
                added = gateway.queue(converted_records(adapter.read(Path(name)), report, held, tally))
            except AdapterError as exc:  # the mapping does not fit the export: nothing was read
                print(f"spe-hub gateway: {exc}", file=sys.stderr)
                outbox.close()
                return 2
            waiting = review.hold(held)
            refused_rows += tally.refused
            print(
                f"{name}: {tally.rows} row(s): {tally.refused} refused, {tally.held} held for review, "
                f"{tally.local} kept local (no consent); {added} new record(s) signed and queued"
                + (f", {gateway.unchanged} unchanged since the last send" if gateway.unchanged else "")
                + (f"; {waiting} held for review (spe-hub gateway review)" if held else "")
            )
    for line in report:
        print(f"  {line}")
    with _channel(a) as channel:
        result = gateway.flush(channel, batch=a.batch)
    print(
        f"sent {result.sent}: {result.accepted} accepted, {result.duplicate} already at the hub, "
        f"{result.rejected} refused; {result.pending} pending"
        + (f" (link: {result.link_error}; run again to send the rest)" if result.link_error else "")
    )
    for record_id, reason in outbox.rejected():
        print(f"  refused {record_id}: {reason}")
    outbox.close()
    # Exit codes (docs/onboarding.md): 1 the hub refused records or the link failed, 3 rows of
    # the export could not be converted, 0 neither.
    if result.link_error or result.rejected:
        return 1
    return 3 if refused_rows else 0


def run_review(args: argparse.Namespace) -> int:
    """``spe-hub gateway review``: list the records held for their occupation, or decide one."""
    from hub.entrypoints.adapters import load_codelists

    a = args
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    review = ReviewQueue(outbox)
    lists = load_codelists(a.codelists)
    if lists is None:
        return 2
    lists.use_aliases(review.aliases())
    try:
        if a.accept is None:
            rows = review.held()
            if not rows:
                print("nothing is held for review")
            for review_id, location, field, title, lang in rows:
                print(f"#{review_id} {location} {field}: {title!r}")
                for n, (isco, uri, label, score) in enumerate(
                    lists.resolve_title(title, lang).suggestions, 1
                ):
                    print(f"    {n}. {isco} {label} ({score:.2f}) {uri}")
            return 0
        if not a.code and not a.choice:
            print("spe-hub gateway review: give --choice N (a suggestion) or --code ISCO", file=sys.stderr)
            return 2
        found = {r[0]: r for r in review.held()}.get(a.accept)
        if found is None:
            print(f"spe-hub gateway review: nothing held as #{a.accept}", file=sys.stderr)
            return 2
        isco, esco = a.code, ""
        if a.choice:
            suggestions = lists.resolve_title(found[3], found[4]).suggestions
            if not 1 <= a.choice <= len(suggestions):
                print(
                    f"spe-hub gateway review: #{a.accept} has {len(suggestions)} suggestion(s)",
                    file=sys.stderr,
                )
                return 2
            isco, esco = suggestions[a.choice - 1][0], suggestions[a.choice - 1][1]
        if isco not in lists.isco_groups and not lists.is_unit(isco):
            print(f"spe-hub gateway review: {isco!r} is not an ISCO-08 group", file=sys.stderr)
            return 2
        folder = Path(a.pki) / "participants" / a.participant
        gateway = Gateway(
            a.participant,
            (folder / "key-id").read_text().strip(),
            (folder / "signing-key.pem").read_bytes(),
            outbox,
        )
        queued = gateway.queue(review.decide(a.accept, isco, esco), progress=False)
        print(
            f"#{a.accept}: {found[3]!r} is {isco} from now on (an alias of this gateway); "
            f"{queued} record(s) signed and queued: `spe-hub gateway send` publishes them"
        )
        return 0
    finally:
        outbox.close()


def run_aliases(args: argparse.Namespace) -> int:
    """``spe-hub gateway aliases export|import FILE``: share reviewed answers with other SPEs."""
    a = args
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    review = ReviewQueue(outbox)
    try:
        if a.direction == "export":
            Path(a.file).write_text(
                json.dumps(review.export(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            )
            print(f"{len(review.aliases())} alias(es) written to {a.file}")
            return 0
        try:
            added = review.import_aliases(json.loads(Path(a.file).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"spe-hub gateway aliases: {exc}", file=sys.stderr)
            return 2
        print(f"{added} alias(es) added from {a.file} (yours are kept where both have one)")
        return 0
    finally:
        outbox.close()


def _channel(a: argparse.Namespace) -> grpc.Channel:
    """The SPE's authorised channel to the hub, from its folder of the PKI."""
    from hub.api.client import pki_channel

    return pki_channel(a.hub, Path(a.pki), a.participant)


def run_receive(args: argparse.Namespace) -> int:
    """``spe-hub gateway receive``: write the SPE's deliveries in its national format."""
    from hub.entrypoints.adapters import build_adapter, load_codelists

    a = args
    lists = load_codelists(a.codelists)
    if lists is None:
        return 2
    key = base64.b64decode(Path(a.subject_key_file).read_text().strip()) if a.subject_key_file else b""
    try:
        # Writing keys nobody: a throwaway key satisfies the adapters that also read people.
        adapter = build_adapter(a.adapter, lists, a.participant, (), a.mapping, key or os.urandom(32))
    except AdapterError as exc:
        print(f"spe-hub gateway: {exc}", file=sys.stderr)
        return 2
    inbox = Inbox(Path(a.out), adapter)
    confirm: bool | int = True if a.confirm_deletions == "all" else int(a.confirm_deletions or 0)
    with _channel(a) as channel:
        try:
            hub_key = Path(a.hub_public_key).read_bytes() if a.hub_public_key else None
            directory = fetch_directory(channel, hub_key)
        except (ValueError, grpc.RpcError) as exc:
            reason = exc.code().name if isinstance(exc, grpc.RpcError) else str(exc)
            print(f"spe-hub gateway: cannot get the directory: {reason}", file=sys.stderr)
            return 1
        report = receive(channel, inbox, directory, confirm_deletions=confirm or False, follow=a.follow)
    inbox.close()
    print(
        f"{report.written} record(s) written to {inbox.folder / 'records'}, {report.withdrawn} withdrawal(s), "
        f"{report.erased} erasure(s), {report.refused} refused (bad signature: see notices.csv); "
        f"{report.checkpoints} audit checkpoint(s) kept in {inbox.folder / 'witness.jsonl'}; "
        + (
            f"every delivery up to sequence {report.acknowledged} acknowledged to the hub"
            if report.acknowledged
            else "nothing new to acknowledge"
        )
    )
    if report.checkpoint_went_back:
        print(
            f"WARNING: the hub's audit checkpoint went back to entry {report.checkpoint_went_back}, below one "
            "kept before: keep witness.jsonl and tell the partnership (docs/trust.md, witnessed checkpoints)"
        )
    if report.held_deletion:
        print(
            f"held at deletion notice {report.held_deletion}: delete the record in your systems (notices.csv), "
            f"then run again with --confirm-deletions {report.held_deletion}"
        )
    if report.link_error:
        print(f"link: {report.link_error}; run again to receive the rest")
    return 1 if report.link_error or report.held_deletion else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "gateway", help="an SPE's gateway: national files → signed records → outbox → hub"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("send", help="convert, sign and queue FILEs (none: only send what is pending)")
    p.add_argument("adapter", help=adapter_help())
    p.add_argument("files", nargs="*")
    p.add_argument("--participant", required=True)
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    add_hub_option(p)
    p.add_argument("--outbox", default="")
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument("--mapping", default="")
    p.add_argument(
        "--subject-key-file", default="", help="base64 key keying national numbers (tabular exports)"
    )
    p.add_argument("--offer-target", action="append", default=[], help="country an offer is addressed to")
    p.add_argument("--country", default="", help="residence country when a CV gives none (europass-xml)")
    p.add_argument("--batch", type=int, default=200)
    p.set_defaults(func=run)
    p = actions.add_parser(
        "review", help="records held for their occupation: list them with suggestions, or decide one"
    )
    p.add_argument("--participant", required=True)
    p.add_argument("--outbox", default="")
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument(
        "--pki", default="certs/dev", help="folder with participants/<id>/ (to sign what is decided)"
    )
    p.add_argument("--accept", type=int, default=None, metavar="ID", help="decide held record #ID")
    p.add_argument("--choice", type=int, default=0, metavar="N", help="with --accept: suggestion N")
    p.add_argument("--code", default="", help="with --accept: an ISCO-08 code of 1 to 4 digits instead")
    p.set_defaults(func=run_review)
    p = actions.add_parser("aliases", help="export or import the gateway's reviewed answers (JSON)")
    p.add_argument("direction", choices=["export", "import"])
    p.add_argument("file")
    p.add_argument("--participant", required=True)
    p.add_argument("--outbox", default="")
    p.set_defaults(func=run_aliases)
    p = actions.add_parser(
        "receive", help="write the SPE's deliveries (offers, notices) in its national format"
    )
    p.add_argument("adapter", help=adapter_help())
    p.add_argument("--participant", required=True)
    p.add_argument(
        "--out", required=True, help="folder for records/<origin>/<record>.v<version>.* and notices.csv"
    )
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    add_hub_option(p)
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument("--mapping", default="", help="the mapping file, for the tabular adapter")
    p.add_argument("--subject-key-file", default="")
    p.add_argument(
        "--hub-public-key", default="", help="check the directory export's signature with this key"
    )
    p.add_argument(
        "--confirm-deletions",
        default="",
        help="SEQ: your systems deleted the record of notice SEQ; 'all': the gateway's files are your only copy",
    )
    p.add_argument("--follow", action="store_true", help="keep receiving until interrupted")
    p.set_defaults(func=run_receive)
