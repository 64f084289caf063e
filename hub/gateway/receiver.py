"""Receiving the SPE's deliveries: verified end to end, written in its national format, durably."""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.message import Message
from spehub.v1 import (
    delivery_pb2,
    delivery_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    envelope_pb2,
)

from adapters.base import Adapter
from hub import csvout
from hub.domain.directory import Directory
from hub.domain.envelopes import envelope_from_proto, open_envelope
from hub.domain.records import RecordRejection, message_of
from hub.gateway.errors import GatewayError


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

    def __init__(self, folder: Path, adapter: Adapter) -> None:
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

    def write_record(self, origin: str, record_id: str, version: int, record: Message) -> Path:
        national = self.adapter.write(record)
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
    from hub.domain.directory import export_signature_valid

    export = directory_pb2_grpc.DirectoryServiceStub(channel).ExportDirectory(
        directory_pb2.ExportDirectoryRequest(), timeout=timeout
    )
    if hub_public_key is not None:
        key = signing.load_public_key(hub_public_key, export.key_id)
        at = export.signed_at
        if not export_signature_valid(
            key, export.key_id, at.seconds, at.nanos, export.registry_json, export.signature
        ):
            raise GatewayError("the directory export's signature does not verify with the hub's public key")
    return Directory.from_dict(json.loads(export.registry_json), origin="hub export")


class Receiver:
    """Writes every delivery waiting for this SPE into an inbox, acknowledging as files are durable.

    ``confirm_deletions``: True lets the gateway confirm deletions (its files are the SPE's only
    copy); a sequence number confirms the deletion notice with that number; False holds the cursor
    before the first unconfirmed deletion notice.
    """

    def __init__(
        self, inbox: Inbox, directory: Directory, confirm_deletions: bool | int = False, ack_every: int = 100
    ) -> None:
        self.inbox = inbox
        self.directory = directory
        self.confirm_deletions = confirm_deletions
        self.ack_every = ack_every

    def run(self, channel: grpc.Channel, follow: bool = False, timeout: float | None = None) -> ReceiveReport:
        """Receive until drained (or, with ``follow``, until the stream ends). Link errors are
        reported in the report, not raised: what was written and acknowledged stays so."""
        stub = delivery_pb2_grpc.DeliveryServiceStub(channel)
        report = ReceiveReport()
        done = 0  # the last sequence whose delivery is fully handled
        acked = 0
        try:
            stream = stub.Subscribe(
                delivery_pb2.SubscribeRequest(stop_when_drained=not follow), timeout=timeout
            )
            for response in stream:
                d = response.delivery
                if not self._handle(d, report):
                    stream.cancel()  # type: ignore[no-untyped-call]
                    break
                done = d.sequence
                if done - acked >= self.ack_every:
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

    def _handle(self, d: delivery_pb2.Delivery, report: ReceiveReport) -> bool:
        """Handle one delivery; False when it must stay unacknowledged (an unconfirmed deletion)."""
        inbox = self.inbox
        if d.kind == delivery_pb2.DELIVERY_KIND_RECORD:
            _receive_record(d, inbox, self.directory, report)
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
            confirmed = self.confirm_deletions is True or self.confirm_deletions == d.sequence
            inbox.notice(
                d,
                d.erased,
                "deletion",
                f"erasure: {removed} file(s) removed here"
                + ("" if confirmed else "; delete it in your systems, then confirm this sequence"),
            )
            if not confirmed:
                report.held_deletion = d.sequence
                return False
            report.erased += 1
        return True


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
