"""Records held until a person decides their occupation, and the SPE's aliases."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message
from spehub.v1 import (
    common_pb2,
    consent_pb2,
    offer_pb2,
    profile_pb2,
)

from adapters.codelists import Resolution, alias_key
from hub.domain import codes
from hub.gateway.errors import GatewayError
from hub.gateway.outbox import Outbox


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
            raise GatewayError(f"no record held for review under #{review_id}")
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
            raise GatewayError("not an alias file exported by `spe-hub gateway aliases export`")
        mine = self.aliases()
        added = 0
        aliases = data["aliases"]
        assert isinstance(aliases, dict)
        for key, entry in aliases.items():
            isco = str(entry.get("isco08", ""))
            if key in mine or not codes.ISCO08_PREFIX.fullmatch(isco):
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
