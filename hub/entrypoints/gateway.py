"""The gateway an SPE runs on its side: national export → signed envelopes → durable outbox → hub.

Every converted record is signed once and its envelope stored in a local
SQLite outbox before anything is sent. Sending takes pending envelopes in
batches over one Publish stream and marks each with the hub's answer; if the
link drops, what was not answered stays pending and the next run sends it
again. A record already stored by the hub comes back DUPLICATE (the bytes are
identical), so an intermittent link loses nothing and duplicates nothing.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from spehub.v1 import envelope_pb2, exchange_pb2, exchange_pb2_grpc
from tqdm import tqdm

from hub.api.client import seal
from hub.domain.records import PayloadKind
from hub.domain.signing import load_private_key

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
        self.db.commit()

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


class Gateway:
    """Signs and queues an SPE's records, and sends the queue to the hub."""

    def __init__(self, participant_id: str, key_id: str, signing_key_pem: bytes, outbox: Outbox) -> None:
        self.participant_id = participant_id
        self.key_id = key_id
        self.key = load_private_key(signing_key_pem, f"signing key of {participant_id}")
        self.outbox = outbox

    def queue(self, records: Iterable[object], progress: bool | None = None) -> int:
        """Sign and queue records (in chunks, so memory stays flat). Returns how many were new."""
        added = 0
        chunk: list[tuple[int, str, int, bytes]] = []
        for record in tqdm(
            records, desc="signing", unit="rec", disable=(progress is False and True) or None, file=sys.stderr
        ):
            kind = KIND_BY_MESSAGE[record.DESCRIPTOR.name]  # type: ignore[attr-defined]
            env = seal(record, kind, self.participant_id, self.key_id, self.key, datetime.now(UTC))  # type: ignore[arg-type]
            header = record.header  # type: ignore[attr-defined]
            chunk.append((kind.payload_type, header.record_id, header.version, env.SerializeToString()))
            if len(chunk) >= 1000:
                added += self.outbox.add(chunk)
                chunk = []
        return added + self.outbox.add(chunk)

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
        return FlushReport(sent, **totals, pending=self.outbox.counts().get("pending", 0))


def converted_records(results: Iterable[object], report: list[str]) -> Iterator[object]:
    """The records of an adapter's output; problems go to ``report``."""
    for converted in results:
        report.extend(str(p) for p in converted.problems)  # type: ignore[attr-defined]
        if converted.record is not None:  # type: ignore[attr-defined]
            yield converted.record  # type: ignore[attr-defined]


def run(args: object) -> int:
    """``spe-hub gateway send``: convert, sign and queue the files, then send the queue."""
    import base64

    from adapters.base import load
    from hub.api.client import authorized_channel
    from hub.entrypoints.adapters import load_codelists

    a = args  # argparse.Namespace
    pki = Path(a.pki)
    folder = pki / "participants" / a.participant
    outbox = Outbox(Path(a.outbox or f"var/gateway/{a.participant}.sqlite3"))
    gateway = Gateway(
        a.participant,
        (folder / "key-id").read_text().strip(),
        (folder / "signing-key.pem").read_bytes(),
        outbox,
    )
    report: list[str] = []
    if a.files:
        lists = load_codelists(a.codelists)
        if lists is None:
            return 2
        options: dict[str, object] = {
            "codelists": lists,
            "origin_participant_id": a.participant,
            "target_country_codes": tuple(a.offer_target),
        }
        if a.mapping:
            key = (
                base64.b64decode(Path(a.subject_key_file).read_text().strip()) if a.subject_key_file else b""
            )
            if len(key) < 32:
                print(
                    "spe-hub gateway: --subject-key-file must hold a base64 key of 32 bytes or more",
                    file=sys.stderr,
                )
                return 2
            options.update(mapping=Path(a.mapping), subject_key=key)
        adapter = load(a.adapter, **options)
        for name in a.files:
            added = gateway.queue(converted_records(adapter.read(Path(name)), report))
            print(f"{name}: {added} new record(s) signed and queued")
    for line in report:
        print(f"  {line}")
    with authorized_channel(
        a.hub,
        (pki / "ca.pem").read_bytes(),
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    ) as channel:
        result = gateway.flush(channel, batch=a.batch)
    print(
        f"sent {result.sent}: {result.accepted} accepted, {result.duplicate} already at the hub, "
        f"{result.rejected} refused; {result.pending} pending"
        + (f" (link: {result.link_error}; run again to send the rest)" if result.link_error else "")
    )
    for record_id, reason in outbox.rejected():
        print(f"  refused {record_id}: {reason}")
    outbox.close()
    return 0 if not result.link_error and not result.rejected else 1


def add_parser(sub: object) -> None:
    parser = sub.add_parser(
        "gateway", help="an SPE's gateway: national files → signed records → outbox → hub"
    )  # type: ignore[attr-defined]
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("send", help="convert, sign and queue FILEs (none: only send what is pending)")
    p.add_argument("adapter")
    p.add_argument("files", nargs="*")
    p.add_argument("--participant", required=True)
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    p.add_argument("--hub", default="127.0.0.1:50051")
    p.add_argument("--outbox", default="")
    p.add_argument("--codelists", default="var/codelists")
    p.add_argument("--mapping", default="")
    p.add_argument(
        "--subject-key-file", default="", help="base64 key keying national numbers (tabular exports)"
    )
    p.add_argument("--offer-target", action="append", default=[], help="country an offer is addressed to")
    p.add_argument("--batch", type=int, default=200)
    parser.set_defaults(func=run)
