"""Records: envelopes (every version received), the current-version pointer, withdrawals
and the search indexes kept in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from hub.domain.records import ConsentIndex, OfferIndex, PersonalIndex, ProfileIndex
from hub.domain.stored import (
    IndexedOffer,
    IndexedProfile,
    NewRecord,
    StoredEnvelope,
)
from hub.store import schema as t
from hub.store.sql import (
    ENVELOPE_COLUMNS,
    RANKING_LOCK,
    Repository,
    chunks,
    drop_rankings,
    stored,
    us,
)


class RecordRepository(Repository):
    """Records: envelopes (every version received), the current-version pointer, withdrawals"""

    def versions_of(
        self, origin_id: str, keys: Iterable[tuple[int, str]]
    ) -> tuple[dict[tuple[int, str, int], bytes], dict[tuple[int, str], tuple[int, int]]]:
        """For records of one origin, by ``(payload_type, record_id)``: the hash of every stored
        version, and each current version.

        Returns ``({(payload_type, record_id, version): sha256}, {(payload_type, record_id): (pk, version)})``.
        Each lookup names the payload type, so it runs in the range of the unique indexes
        (origin, payload type, record id, ...): without it, PostgreSQL scanned every envelope of the
        origin, a cost that grew with the store (a parallel scan per batch, past 500,000 records).
        """
        by_type: dict[int, set[str]] = {}
        for ptype, rid in keys:
            by_type.setdefault(ptype, set()).add(rid)
        stored: dict[tuple[int, str, int], bytes] = {}
        current: dict[tuple[int, str], tuple[int, int]] = {}
        e, r = t.envelopes.c, t.records.c
        for ptype, ids in sorted(by_type.items()):
            for chunk in chunks(sorted(ids), 500):
                for rid, version, sha in self.conn.execute(
                    select(e.record_id, e.version, e.payload_sha256).where(
                        e.origin_id == origin_id, e.payload_type == ptype, e.record_id.in_(chunk)
                    )
                ):
                    stored[(ptype, rid, version)] = sha
                for pk, rid, version in self.conn.execute(
                    select(r.id, r.record_id, r.version).where(
                        r.origin_id == origin_id, r.payload_type == ptype, r.record_id.in_(chunk)
                    )
                ):
                    current[(ptype, rid)] = (pk, version)
        return stored, current

    def add(
        self, items: Sequence[NewRecord], current: dict[tuple[int, str], tuple[int, int]], now_us: int
    ) -> list[int]:
        """Store new current versions (envelope bytes, pointer, index). Returns the envelope ids, in order.

        ``current`` is what ``versions_of`` returned; items must be newer than it.
        """
        if not items:
            return []
        envelope_rows = [
            {
                "origin_id": it.parsed.origin_id,
                "payload_type": it.parsed.kind.payload_type,
                "record_id": it.parsed.record_id,
                "version": it.parsed.version,
                "payload": it.stored_payload if it.stored_payload is not None else it.envelope.payload,
                "payload_sha256": it.sha256,
                "signer_id": it.envelope.signer_id,
                "key_id": it.envelope.key_id,
                "signature": it.envelope.signature,
                "signed_at_seconds": it.envelope.signed_at_seconds,
                "signed_at_nanos": it.envelope.signed_at_nanos,
                "received_at_us": now_us,
            }
            for it in items
        ]
        # Ids first, so that nothing is read back (INSERT ... RETURNING with ordered results runs one
        # statement per row on SQLite).
        if not self.is_sqlite:
            # Held to the commit: a match ranking's watermark waits for it (publication_watermark).
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({RANKING_LOCK})")
        envelope_ids = self._new_ids(t.envelopes, len(items))
        for row, env_id in zip(envelope_rows, envelope_ids, strict=True):
            row["id"] = env_id
        self._insert_many(t.envelopes, envelope_rows)
        # Several versions of one record may arrive in one batch (in increasing
        # order): every version is kept as an envelope, only the last becomes current.
        newest: dict[tuple[int, str], tuple[NewRecord, int]] = {}
        for it, env_id in zip(items, envelope_ids, strict=True):
            newest[(it.parsed.kind.payload_type, it.parsed.record_id)] = (it, env_id)
        fresh: list[tuple[NewRecord, int]] = []
        replaced: list[tuple[NewRecord, int, int]] = []
        for key, (it, env_id) in newest.items():
            existing = current.get(key)
            if existing is None:
                fresh.append((it, env_id))
            else:
                replaced.append((it, existing[0], env_id))
        record_pks: list[tuple[NewRecord, int]] = []
        if fresh:
            pks = self._new_ids(t.records, len(fresh))
            self._insert_many(
                t.records,
                [
                    {
                        "id": pk,
                        "origin_id": it.parsed.origin_id,
                        "payload_type": it.parsed.kind.payload_type,
                        "record_id": it.parsed.record_id,
                        "version": it.parsed.version,
                        "envelope_id": env_id,
                    }
                    for (it, env_id), pk in zip(fresh, pks, strict=True)
                ],
            )
            record_pks.extend((it, pk) for (it, _), pk in zip(fresh, pks, strict=True))
        if replaced:
            r = t.records.c
            self.conn.execute(
                update(t.records)
                .where(r.id == bindparam("pk"))
                .values(version=bindparam("new_version"), envelope_id=bindparam("new_envelope")),
                [
                    {"pk": pk, "new_version": it.parsed.version, "new_envelope": env_id}
                    for it, pk, env_id in replaced
                ],
            )
            stale = [pk for _, pk, _ in replaced]
            self._drop_index(stale)
            # A new version of a withdrawn record publishes it again.
            for chunk in chunks(stale, 500):
                self.conn.execute(delete(t.withdrawals).where(t.withdrawals.c.record_pk.in_(chunk)))
            record_pks.extend((it, pk) for it, pk, _ in replaced)
        self._index(record_pks)
        return envelope_ids

    def _index(self, items: Sequence[tuple[NewRecord, int]]) -> None:
        rows: dict[Any, list[dict[str, Any]]] = {}

        def add(table: Any, **values: Any) -> None:
            rows.setdefault(table, []).append(values)

        for it, pk in items:
            idx = it.parsed.index
            if isinstance(idx, ProfileIndex):
                add(
                    t.profiles,
                    record_pk=pk,
                    origin_id=it.parsed.origin_id,
                    residence_country=idx.residence_country,
                    consent_record_id=idx.consent_record_id,
                    mobility_mask=idx.mobility_mask,
                    available_from=idx.available_from,
                )
                destinations = ",".join(sorted(idx.destinations))
                for code in idx.isco08_codes:
                    add(
                        t.profile_occupations,
                        record_pk=pk,
                        isco08_code=code,
                        mobility_mask=idx.mobility_mask,
                        available_from=idx.available_from,
                        destinations=destinations,
                    )
                for lang, level in idx.languages:
                    add(t.profile_languages, record_pk=pk, language_code=lang, level=level)
                for country in idx.destinations:
                    add(t.profile_destinations, record_pk=pk, country_code=country)
                for skill in idx.skills:
                    add(t.profile_skills, record_pk=pk, skill=skill[:300])
                add(t.profile_experience, record_pk=pk, months=idx.experience_months)
            elif isinstance(idx, OfferIndex):
                add(
                    t.offers,
                    record_pk=pk,
                    isco08_code=idx.isco08_code,
                    work_country=idx.work_country,
                    mobility_type=idx.mobility_type,
                    start_date=idx.start_date,
                    deadline=idx.deadline,
                )
                for country in idx.target_countries:
                    add(t.offer_targets, record_pk=pk, country_code=country)
            elif isinstance(idx, ConsentIndex):
                add(
                    t.consents,
                    record_pk=pk,
                    origin_id=it.parsed.origin_id,
                    record_id=it.parsed.record_id,
                    status=idx.status,
                    purpose_mask=idx.purpose_mask,
                    valid_from_us=us(idx.valid_from),
                    # The consent policy sets valid_until before a consent is stored.
                    valid_until_us=us(idx.valid_until),  # type: ignore[arg-type]
                )
                for pid in idx.recipient_participants:
                    add(t.consent_recipients, record_pk=pk, participant_id=pid, country_code=None)
                for country in idx.recipient_countries:
                    add(t.consent_recipients, record_pk=pk, participant_id=None, country_code=country)
            elif isinstance(idx, PersonalIndex):
                pass  # stored as bytes only; never searched
        # Parents before children (foreign keys): main index tables first.
        for table in (*t.INDEX_MAIN, *t.INDEX_CHILDREN):
            if table in rows:
                self._insert_many(table, rows[table])

    def current(
        self, origin_id: str, payload_type: int, record_id: str
    ) -> tuple[int, StoredEnvelope, int | None] | None:
        """The current version of a record: (record pk, envelope, withdrawn_at_us or None), or None."""
        r, w = t.records.c, t.withdrawals.c
        row = self.conn.execute(
            select(r.id, w.withdrawn_at_us, *ENVELOPE_COLUMNS)
            .select_from(t.records)
            .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
            .outerjoin(t.withdrawals, w.record_pk == r.id)
            .where(r.origin_id == origin_id, r.payload_type == payload_type, r.record_id == record_id)
        ).first()
        if row is None:
            return None
        return row[0], stored(row[2:]), row[1]

    def withdraw_all(self, record_pks: Sequence[int], at_us: int) -> None:
        """Withdraw several records (those not withdrawn yet) and drop them from the indexes."""
        if not record_pks:
            return
        w = t.withdrawals.c
        done = set(self.conn.execute(select(w.record_pk).where(w.record_pk.in_(record_pks))).scalars())
        todo = [pk for pk in record_pks if pk not in done]
        if todo:
            self.conn.execute(
                insert(t.withdrawals), [{"record_pk": pk, "withdrawn_at_us": at_us} for pk in todo]
            )
        self._drop_index(list(record_pks))

    def withdraw(self, record_pk: int, at_us: int) -> None:
        """Mark a record withdrawn and drop it from every search index."""
        self.conn.execute(insert(t.withdrawals).values(record_pk=record_pk, withdrawn_at_us=at_us))
        self._drop_index([record_pk])

    def recipients_of(self, origin_id: str, payload_type: int, record_id: str) -> list[str]:
        """Participants any version of the record was delivered to, sorted."""
        d, e = t.deliveries.c, t.envelopes.c
        query = (
            select(d.recipient_id)
            .distinct()
            .join(t.envelopes, e.id == d.envelope_id)
            .where(e.origin_id == origin_id, e.payload_type == payload_type, e.record_id == record_id)
        )
        return sorted(self.conn.execute(query).scalars())

    def _drop_index(self, record_pks: Sequence[int]) -> None:
        drop_rankings(self.conn, offers=record_pks, profiles=record_pks)
        for table in (*t.INDEX_CHILDREN, *t.INDEX_MAIN):
            for chunk in chunks(record_pks, 500):
                self.conn.execute(delete(table).where(table.c.record_pk.in_(chunk)))

    def envelopes_of(self, record_pks: Sequence[int]) -> dict[int, StoredEnvelope]:
        """Current envelopes of records, by record pk."""
        r = t.records.c
        out: dict[int, StoredEnvelope] = {}
        for chunk in chunks(list(record_pks), 500):
            query = (
                select(r.id, *ENVELOPE_COLUMNS)
                .select_from(t.records)
                .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
                .where(self._among(r.id, chunk))
            )
            out.update({row[0]: stored(row[1:]) for row in self.conn.execute(query)})
        return out

    def record_pks(self, origin_id: str, payload_type: int, record_ids: Sequence[str]) -> dict[str, int]:
        """Current record pks of some of an origin's records, by record id."""
        r = t.records.c
        out: dict[str, int] = {}
        for chunk in chunks(sorted(set(record_ids)), 500):
            query = select(r.record_id, r.id).where(
                r.origin_id == origin_id, r.payload_type == payload_type, r.record_id.in_(chunk)
            )
            out.update({rid: pk for rid, pk in self.conn.execute(query)})
        return out

    def count_envelopes(self, record_id: str | None = None) -> int:
        """How many envelopes are stored (for one record id if given)."""
        query = select(func.count()).select_from(t.envelopes)
        if record_id is not None:
            query = query.where(t.envelopes.c.record_id == record_id)
        return int(self.conn.execute(query).scalar() or 0)

    def newest_envelope(self) -> int:
        """The largest envelope id stored (0 when none)."""
        return int(self.conn.execute(select(func.coalesce(func.max(t.envelopes.c.id), 0))).scalar_one())

    def indexed_offer_revision(self, record_pk: int) -> int | None:
        """The current envelope id of an offer in the offer index (None: not there, e.g. withdrawn)."""
        o, r = t.offers.c, t.records.c
        return self.conn.execute(
            select(r.envelope_id).join(t.offers, o.record_pk == r.id).where(r.id == record_pk)
        ).scalar()

    def offer(self, record_pk: int) -> IndexedOffer:
        """An offer's indexed facts (it must be in the offer index)."""
        return IndexedOffer(
            *self.conn.execute(select(t.offers).where(t.offers.c.record_pk == record_pk)).one()
        )

    def profile(self, record_pk: int) -> IndexedProfile:
        """A profile's indexed facts (it must be in the profile index)."""
        return IndexedProfile(
            *self.conn.execute(select(t.profiles).where(t.profiles.c.record_pk == record_pk)).one()
        )
