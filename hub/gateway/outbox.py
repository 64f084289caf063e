"""The durable outbox of signed envelopes, with the content of each record's newest version."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spehub.v1 import consent_pb2, envelope_pb2

from adapters.mapping import consent_terms
from hub.domain.records import PayloadKind


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
        # What each consent form version covered when consents were first signed under it: fixed
        # from then on (hub.gateway.sender.Sender.check_forms). terms: JSON {field: value}.
        forms_existed = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'consent_forms'"
        ).fetchone()
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS consent_forms (
                version TEXT PRIMARY KEY, terms TEXT NOT NULL, first_signed_at TEXT NOT NULL)"""
        )
        self.db.commit()
        if not forms_existed:
            self._record_published_forms()

    def _record_published_forms(self) -> None:
        """For an outbox that signed consents before forms were recorded: each form version's
        terms as the first consent signed under it shows them (all but the purposes, which vary
        by row)."""
        found: dict[str, tuple[str, dict[str, str]]] = {}
        rows = self.db.execute(
            "SELECT envelope FROM outbox WHERE payload_type = ? ORDER BY seq",
            (PayloadKind.CONSENT.payload_type,),
        )
        for (blob,) in rows:
            envelope = envelope_pb2.SignedEnvelope.FromString(blob)
            consent = consent_pb2.Consent.FromString(envelope.payload)
            if consent.purposes:
                signed = datetime.fromtimestamp(envelope.signed_at.seconds, UTC).isoformat()
                version = consent.purposes[0].notice_version
                found.setdefault(version, (signed, consent_terms(consent)))
        with self.db:
            for version, (signed, terms) in found.items():
                self.fix_form(version, terms, signed)

    def form_terms(self) -> dict[str, tuple[dict[str, str], str]]:
        """The terms each used consent form version was fixed with, and when: {version: (terms, at)}."""
        return {
            version: (json.loads(terms), at)
            for version, terms, at in self.db.execute(
                "SELECT version, terms, first_signed_at FROM consent_forms"
            )
        }

    def fix_form(self, version: str, terms: dict[str, str], at: str) -> None:
        """Record a form version's terms at its first use (kept as they were if already recorded);
        committed with the next envelopes queued."""
        self.db.execute(
            "INSERT OR IGNORE INTO consent_forms VALUES (?, ?, ?)",
            (version, json.dumps(terms, sort_keys=True), at),
        )

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

    def newest_envelope(self, payload_type: int, record_id: str) -> bytes | None:
        """The envelope of the newest version of a record this gateway signed, or None."""
        row = self.db.execute(
            "SELECT envelope FROM outbox WHERE payload_type = ? AND record_id = ? ORDER BY version DESC LIMIT 1",
            (payload_type, record_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

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
