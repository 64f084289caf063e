"""The store: engine set-up, a unit of work per transaction, and the queries the services need.

SQLite (default) runs in WAL mode with 16 KiB pages; write transactions take
the write lock up front (BEGIN IMMEDIATE) so that two writers never deadlock on
a lock upgrade. PostgreSQL is reached through psycopg 3. Database errors leave
this module as StoreUnavailableError; a unit of work rolls back unless
committed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from hub.domain import audit, matching
from hub.domain.audit import AuditDraft
from hub.domain.envelopes import Envelope
from hub.domain.records import (
    ConsentIndex,
    OfferIndex,
    ParsedRecord,
    PayloadKind,
    PersonalIndex,
    ProfileIndex,
    mobility_bit,
)
from hub.errors import StoreConflictError, StoreUnavailableError
from hub.store import migrate
from hub.store import schema as t

log = logging.getLogger("spehub")


@dataclass(frozen=True)
class NewRecord:
    """A verified, validated record to store as the new current version."""

    envelope: Envelope
    parsed: ParsedRecord
    stored_payload: bytes | None = None
    """What is written instead of the clear payload (sealed with the candidate's data key)."""
    digest: bytes | None = None
    """Duplicate-detection digest of the clear payload (keyed, for sealed records)."""

    @cached_property
    def sha256(self) -> bytes:
        return self.digest if self.digest is not None else hashlib.sha256(self.envelope.payload).digest()


@dataclass(frozen=True)
class StoredEnvelope:
    """An envelope as stored: the exact bytes received, with their signature."""

    id: int
    payload_type: int
    origin_id: str
    record_id: str
    version: int
    payload: bytes
    signer_id: str
    key_id: str
    signature: bytes
    signed_at_seconds: int
    signed_at_nanos: int


@dataclass(frozen=True)
class ProfileFilter:
    """Search filters over the profile index (AND between fields, OR inside one)."""

    isco08_prefixes: tuple[str, ...] = ()
    languages: tuple[tuple[str, int], ...] = ()
    destination_country: str = ""
    mobility_mask: int = 0
    available_by: date | None = None
    origin_countries: tuple[str, ...] = ()
    record_pk: int | None = None
    """Only this record (GetRecord asks whether one profile is visible)."""


@dataclass(frozen=True)
class OfferFilter:
    """Search filters over the offer index."""

    isco08_prefixes: tuple[str, ...] = ()
    work_country: str = ""
    mobility_types: tuple[int, ...] = ()
    target_country: str = ""
    open_on: date | None = None


@dataclass(frozen=True)
class Audience:
    """Who is asking and for what: a profile is visible only under a consent that allows it."""

    participant_id: str
    country_code: str
    purpose_bit: int
    active_status: int
    now_us: int


@dataclass(frozen=True)
class RankingState:
    """What a kept match ranking of an offer covers (hub.store.schema.match_ranking_state)."""

    offer_revision: int
    """The offer's envelope id when ranked."""
    watermark: int
    """Profiles whose current envelope is at or below it were ranked; later ones were not."""
    boundary: tuple[int, int] | None
    """(score, profile pk) of the last candidate kept; None when every candidate was kept."""


MatchRow = tuple[matching.Candidate, str, str, str, int]
"""A ranked candidate: (matching facts, origin id, residence country, consent record id, score)."""

PROFILE_TYPE = PayloadKind.CANDIDATE_PROFILE.payload_type
RANKING_LOCK = 727468
"""PostgreSQL advisory lock: publications hold it shared, a ranking's watermark exclusively."""


@dataclass(frozen=True)
class CycleRow:
    """A mobility cycle as stored (columns of mobility_cycles, in order)."""

    id: int
    origin_id: str
    application_id: str
    profile_record_id: str
    offer_origin_id: str
    offer_record_id: str
    origin_country: str
    destination_country: str
    mobility_type: int
    isco08_code: str
    consent_record_id: str
    state: int
    updated_at_us: int


@dataclass(frozen=True)
class DeliveryRow:
    seq: int
    kind: int
    routed_at_us: int
    envelope: StoredEnvelope


_ENVELOPE_COLUMNS = (
    t.envelopes.c.id,
    t.envelopes.c.payload_type,
    t.envelopes.c.origin_id,
    t.envelopes.c.record_id,
    t.envelopes.c.version,
    t.envelopes.c.payload,
    t.envelopes.c.signer_id,
    t.envelopes.c.key_id,
    t.envelopes.c.signature,
    t.envelopes.c.signed_at_seconds,
    t.envelopes.c.signed_at_nanos,
)


def _stored(row: Any) -> StoredEnvelope:
    return StoredEnvelope(*row[: len(_ENVELOPE_COLUMNS)])


@functools.lru_cache(maxsize=256)
def _insert_statement(
    dialect: Dialect, table: Any, columns: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], bool]:
    """The INSERT of ``columns`` in the driver's own parameter style, the order of its positional
    parameters, each column's bind processing (dates on SQLite, say), and whether it is positional."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup or columns)
    processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
    return str(compiled), order, processors, bool(compiled.positional)


class Store:
    """The hub's database. Create one per process (hub.bootstrap); it is thread-safe."""

    def __init__(self, url: str, checkpoint_seconds: float = 0.5) -> None:
        self.url = url
        self._dialect = make_url(url).get_backend_name()
        self.engine = _make_engine(url, self._dialect)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in steps of up
        # to 100 ms before trying again: under several publishers the lock sat free while they slept,
        # and one could lose the race until the busy timeout. Writers of this process queue here
        # instead, and take the lock the moment the previous one commits.
        self._writers = threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        database = make_url(url).database if self.is_sqlite else None
        self._checkpoints = (
            _Checkpointer(database, checkpoint_seconds) if database and database != ":memory:" else None
        )

    @property
    def is_sqlite(self) -> bool:
        return self._dialect == "sqlite"

    def create_schema(self) -> None:
        """Bring the schema to the newest revision (hub.store.migrate).

        Raises StoreUnavailableError if the database cannot be reached.
        """
        try:
            migrate.upgrade(self.engine)
        except OperationalError as exc:
            raise StoreUnavailableError(f"cannot migrate the schema: {type(exc.orig).__name__}") from exc

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self.engine.dispose()

    @contextmanager
    def unit_of_work(self, write: bool = False) -> Iterator[UnitOfWork]:
        """A transaction; rolled back unless ``commit()`` was called.

        Raises StoreUnavailableError when the database fails; nothing is
        written then.
        """
        try:
            with self._writers if write else contextlib.nullcontext(), self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(spehub_write=True)
                with conn.begin() as tx:
                    uow = UnitOfWork(conn, self.is_sqlite)
                    yield uow
                    if uow.committed:
                        tx.commit()
                    else:
                        tx.rollback()
        except IntegrityError as exc:
            raise StoreConflictError(
                "another hub process wrote the same record at the same moment; nothing was written"
            ) from exc
        except DBAPIError as exc:
            raise StoreUnavailableError(
                f"the database did not complete the transaction ({_db_reason(exc)}); nothing was written"
            ) from exc


def _make_engine(url: str, dialect: str) -> Engine:
    if dialect == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own
            # transaction handling would defer it and break BEGIN IMMEDIATE).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA page_size=16384")  # only takes effect on a new file
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (SIGKILL); FULL would also
            # survive power loss at about half the commit rate.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # Checkpoints run in a thread of their own (_Checkpointer), not in the transaction
            # that happens to fill the WAL: one took 100 ms on the million-profile store, and was
            # most of a match's p95.
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql(
                "BEGIN IMMEDIATE" if conn.get_execution_options().get("spehub_write") else "BEGIN"
            )

        return engine
    return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True)


class _Checkpointer:
    """Copies a SQLite database's write-ahead log into the database file every ``interval`` seconds,
    on a connection and thread of its own (PASSIVE: it never waits for, nor blocks, readers and
    writers), and once more when stopped."""

    def __init__(self, database: str, interval: float) -> None:
        self.database = database
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.database, timeout=30, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again; the WAL keeps everything
                    log.warning("SQLite checkpoint failed: %s", type(exc).__name__)
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


class UnitOfWork:
    """One transaction's worth of reads and writes."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self.committed = False

    def commit(self) -> None:
        self.committed = True

    def _insert_many(self, table: Any, rows: Sequence[dict[str, Any]]) -> None:
        """INSERT rows (all with the same keys) through the driver: COPY on PostgreSQL, executemany
        elsewhere. SQLAlchemy's per-row parameter handling was a quarter of the time of a publication
        (cProfile); the column types' bind processing is still applied."""
        if not rows:
            return
        if self.conn.dialect.driver == "psycopg":
            # PostgreSQL: COPY, three times faster per row than executemany (10 against 32 µs
            # for a row of profile_occupations and its three indexes, measured on loopback).
            preparer = self.conn.dialect.identifier_preparer
            columns = list(rows[0])
            statement = (
                f"COPY {preparer.format_table(table)} ({', '.join(preparer.quote(c) for c in columns)}) "
                "FROM STDIN"
            )
            cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            dbapi_error = self.conn.dialect.loaded_dbapi.Error
            try:
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
            except dbapi_error as exc:
                # As SQLAlchemy would have raised it (IntegrityError on a unique key, and so on).
                raise DBAPIError.instance(
                    statement, None, exc, dbapi_error, hide_parameters=True, dialect=self.conn.dialect
                ) from exc
            return
        sql, order, processors, positional = _insert_statement(self.conn.dialect, table, tuple(rows[0]))
        if all(p is None for p in processors):
            values = [tuple(row[name] for name in order) for row in rows]
        else:
            values = [
                tuple(
                    row[name] if p is None else p(row[name])
                    for name, p in zip(order, processors, strict=True)
                )
                for row in rows
            ]
        if positional:
            self.conn.exec_driver_sql(sql, values)
        else:
            self.conn.exec_driver_sql(sql, [dict(zip(order, v, strict=True)) for v in values])

    # -- publication ---------------------------------------------------------

    def versions_of(
        self, origin_id: str, record_ids: Iterable[str]
    ) -> tuple[dict[tuple[int, str, int], bytes], dict[tuple[int, str], tuple[int, int]]]:
        """For records of one origin: the hash of every stored version, and each current version.

        Returns ``({(payload_type, record_id, version): sha256}, {(payload_type, record_id): (pk, version)})``.
        """
        ids = sorted(set(record_ids))
        stored: dict[tuple[int, str, int], bytes] = {}
        current: dict[tuple[int, str], tuple[int, int]] = {}
        for chunk in _chunks(ids, 500):
            e = t.envelopes.c
            for ptype, rid, version, sha in self.conn.execute(
                select(e.payload_type, e.record_id, e.version, e.payload_sha256).where(
                    e.origin_id == origin_id, e.record_id.in_(chunk)
                )
            ):
                stored[(ptype, rid, version)] = sha
            r = t.records.c
            for pk, ptype, rid, version in self.conn.execute(
                select(r.id, r.payload_type, r.record_id, r.version).where(
                    r.origin_id == origin_id, r.record_id.in_(chunk)
                )
            ):
                current[(ptype, rid)] = (pk, version)
        return stored, current

    def add_records(
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
            for chunk in _chunks(stale, 500):
                self.conn.execute(delete(t.withdrawals).where(t.withdrawals.c.record_pk.in_(chunk)))
            record_pks.extend((it, pk) for it, pk, _ in replaced)
        self._index(record_pks)
        return envelope_ids

    def _new_ids(self, table: Any, n: int) -> list[int]:
        """``n`` ids for new rows of ``table``, taken before the insert so that none has to be read back
        (reading them back by natural key was a tenth of a publication)."""
        if self.is_sqlite:
            # This transaction holds SQLite's write lock (BEGIN IMMEDIATE): nobody inserts meanwhile.
            top = self.conn.execute(select(func.max(table.c.id))).scalar() or 0
            return list(range(top + 1, top + n + 1))
        # PostgreSQL: from the column's own sequence, which other hub processes draw from too.
        return list(
            self.conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence(%(table)s, 'id')) FROM generate_series(1, %(n)s)",
                {"table": table.name, "n": n},
            ).scalars()
        )

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
                for code in idx.isco08_codes:
                    add(t.profile_occupations, record_pk=pk, isco08_code=code)
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
                    valid_from_us=_us(idx.valid_from),
                    # The consent policy sets valid_until before a consent is stored.
                    valid_until_us=_us(idx.valid_until),  # type: ignore[arg-type]
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

    # -- directory -----------------------------------------------------------

    def directory_version(self) -> int:
        """The directory's change counter (0 before the first change)."""
        value = self.conn.execute(
            select(t.directory_state.c.version).where(t.directory_state.c.id == 1)
        ).scalar()
        return int(value or 0)

    def bump_directory_version(self) -> int:
        """Record that the directory changed. Returns the new version."""
        state = t.directory_state.c
        if not self.conn.execute(
            update(t.directory_state).where(state.id == 1).values(version=state.version + 1)
        ).rowcount:
            self.conn.execute(insert(t.directory_state).values(id=1, version=1))
        return self.directory_version()

    def directory_rows(self) -> tuple[list[Any], list[Any], set[str]]:
        """Every participant, every signing key, and the revoked certificate hashes."""
        participants = list(self.conn.execute(select(t.participants).order_by(t.participants.c.id)))
        keys = list(
            self.conn.execute(
                select(t.signing_keys).order_by(
                    t.signing_keys.c.participant_id, t.signing_keys.c.not_before_us
                )
            )
        )
        revoked = set(self.conn.execute(select(t.revoked_certificates.c.sha256)).scalars())
        return participants, keys, revoked

    def participant_row(self, participant_id: str) -> Any | None:
        return self.conn.execute(select(t.participants).where(t.participants.c.id == participant_id)).first()

    def insert_participant(self, **values: Any) -> None:
        self.conn.execute(insert(t.participants).values(**values))

    def set_participant_status(self, participant_id: str, status: str) -> bool:
        """True if the participant exists."""
        p = t.participants.c
        return bool(
            self.conn.execute(
                update(t.participants).where(p.id == participant_id).values(status=status)
            ).rowcount
        )

    def signing_key_row(self, participant_id: str, key_id: str) -> Any | None:
        k = t.signing_keys.c
        return self.conn.execute(
            select(t.signing_keys).where(k.participant_id == participant_id, k.key_id == key_id)
        ).first()

    def insert_signing_key(self, **values: Any) -> None:
        self.conn.execute(insert(t.signing_keys).values(**values))

    def retire_signing_keys(self, participant_id: str, at_us: int, keep_key_id: str) -> int:
        """Set not_after on the participant's open keys except ``keep_key_id``. Returns how many."""
        k = t.signing_keys.c
        return self.conn.execute(
            update(t.signing_keys)
            .where(k.participant_id == participant_id, k.key_id != keep_key_id, k.not_after_us.is_(None))
            .values(not_after_us=at_us)
        ).rowcount

    def revoke_signing_key(self, participant_id: str, key_id: str, at_us: int) -> bool:
        """Revoke (first revocation time wins). True if the key exists."""
        k = t.signing_keys.c
        where = (k.participant_id == participant_id, k.key_id == key_id)
        if self.signing_key_row(participant_id, key_id) is None:
            return False
        self.conn.execute(
            update(t.signing_keys).where(*where, k.revoked_at_us.is_(None)).values(revoked_at_us=at_us)
        )
        return True

    def revoke_certificate(self, sha256_hex: str, at_us: int) -> int:
        """Revoke a certificate by hash (first revocation time wins). Returns the revocation time."""
        c = t.revoked_certificates.c
        existing = self.conn.execute(select(c.revoked_at_us).where(c.sha256 == sha256_hex)).scalar()
        if existing is not None:
            return int(existing)
        self.conn.execute(insert(t.revoked_certificates).values(sha256=sha256_hex, revoked_at_us=at_us))
        return at_us

    def use_token_id(self, jti: str, expires_at_us: int, now_us: int) -> bool:
        """Mark a single-use token id as used. False if it was used before."""
        u = t.used_token_ids.c
        self.conn.execute(delete(t.used_token_ids).where(u.expires_at_us < now_us))
        try:
            # A savepoint, so that a concurrent use (primary-key conflict) does
            # not abort the surrounding transaction on PostgreSQL.
            with self.conn.begin_nested():
                self.conn.execute(insert(t.used_token_ids).values(jti=jti, expires_at_us=expires_at_us))
        except IntegrityError:
            return False
        return True

    # -- single records ------------------------------------------------------

    def current_record(
        self, origin_id: str, payload_type: int, record_id: str
    ) -> tuple[int, StoredEnvelope, int | None] | None:
        """The current version of a record: (record pk, envelope, withdrawn_at_us or None), or None."""
        r, w = t.records.c, t.withdrawals.c
        row = self.conn.execute(
            select(r.id, w.withdrawn_at_us, *_ENVELOPE_COLUMNS)
            .select_from(t.records)
            .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
            .outerjoin(t.withdrawals, w.record_pk == r.id)
            .where(r.origin_id == origin_id, r.payload_type == payload_type, r.record_id == record_id)
        ).first()
        if row is None:
            return None
        return row[0], _stored(row[2:]), row[1]

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
        self._drop_rankings(offers=record_pks, profiles=record_pks)
        for table in (*t.INDEX_CHILDREN, *t.INDEX_MAIN):
            for chunk in _chunks(record_pks, 500):
                self.conn.execute(delete(table).where(table.c.record_pk.in_(chunk)))

    # -- audit ---------------------------------------------------------------

    def append_audit(self, drafts: Sequence[AuditDraft], at_us: int) -> None:
        """Append entries to the hash chain, in this transaction (rolled back with it)."""
        if not drafts:
            return
        if not self.is_sqlite:
            # One appender at a time: each entry hashes the one before it.
            self.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727466)")
        a = t.audit_log.c
        last = self.conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
        seq, prev = (last[0], last[1]) if last else (0, audit.GENESIS)
        rows = []
        for d in drafts:
            seq += 1
            digest = audit.chain_hash(prev, seq, at_us, d)
            rows.append(
                {
                    "seq": seq,
                    "at_us": at_us,
                    "actor": d.actor,
                    "action": d.action,
                    "origin_id": d.origin_id,
                    "payload_type": d.payload_type,
                    "record_id": d.record_id,
                    "version": d.version,
                    "consent_record_id": d.consent_record_id,
                    "purpose": d.purpose,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        self._insert_many(t.audit_log, rows)

    def audit_entries(
        self, origin_id: str | None = None, consent_record_id: str | None = None
    ) -> Iterator[audit.AuditEntry]:
        """Entries in sequence order (all, or those of one subject)."""
        a = t.audit_log.c
        query = select(t.audit_log).order_by(a.seq)
        if origin_id is not None:
            query = query.where(a.origin_id == origin_id, a.consent_record_id == consent_record_id)
        for r in self.conn.execute(query):
            yield audit.AuditEntry(
                r.seq,
                r.at_us,
                audit.AuditDraft(
                    r.actor,
                    r.action,
                    r.origin_id,
                    r.payload_type,
                    r.record_id,
                    r.version,
                    r.consent_record_id,
                    r.purpose,
                ),
                r.prev_hash,
                r.hash,
            )

    def last_audit(self) -> tuple[int, bytes] | None:
        a = t.audit_log.c
        row = self.conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
        return (row[0], row[1]) if row else None

    def checkpoints(self) -> list[audit.Checkpoint]:
        c = t.audit_checkpoints.c
        return [
            audit.Checkpoint(r.seq, r.hash, r.at_us, r.key_id, r.signature)
            for r in self.conn.execute(select(t.audit_checkpoints).order_by(c.seq))
        ]

    def add_checkpoint(self, cp: audit.Checkpoint) -> None:
        self.conn.execute(
            insert(t.audit_checkpoints).values(
                seq=cp.seq, hash=cp.hash, at_us=cp.at_us, key_id=cp.key_id, signature=cp.signature
            )
        )

    def add_checkpoint_envelope(self, cp: audit.Checkpoint, signer_id: str, payload: bytes) -> int:
        """Keep a signed checkpoint as an envelope (not a record: no participant published it), so
        that it is delivered like one. Returns the envelope id."""
        seconds, micros = divmod(cp.at_us, 1_000_000)
        return int(
            self.conn.execute(
                insert(t.envelopes).values(
                    origin_id="",
                    payload_type=audit.CHECKPOINT_PAYLOAD_TYPE,
                    record_id=f"checkpoint-{cp.seq}",
                    version=1,
                    payload=payload,
                    payload_sha256=hashlib.sha256(payload).digest(),
                    signer_id=signer_id,
                    key_id=cp.key_id,
                    signature=cp.signature,
                    signed_at_seconds=seconds,
                    signed_at_nanos=micros * 1000,
                    received_at_us=cp.at_us,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )

    def disclosed_to(self, origin_id: str, consent_record_id: str) -> list[str]:
        """Participants other than the origin that were disclosed records of this candidate."""
        a = t.audit_log.c
        query = (
            select(a.actor)
            .distinct()
            .where(
                a.origin_id == origin_id,
                a.consent_record_id == consent_record_id,
                a.action.in_([d.value for d in audit.Disclosure]),
                a.actor != origin_id,
            )
        )
        return sorted(self.conn.execute(query).scalars())

    # -- consents ----------------------------------------------------------------

    def consent_states(self, origin_id: str, record_ids: Iterable[str]) -> dict[str, int]:
        """Current status of the origin's consent records (by record id)."""
        c = t.consents.c
        ids = sorted(set(record_ids))
        out: dict[str, int] = {}
        for chunk in _chunks(ids, 500):
            for rid, status in self.conn.execute(
                select(c.record_id, c.status).where(c.origin_id == origin_id, c.record_id.in_(chunk))
            ):
                out[rid] = status
        return out

    def consent_allows(
        self, origin_id: str, consent_record_id: str, audience: Audience, named_only: bool
    ) -> bool:
        """Whether the consent is active now, grants the audience's purpose and names it
        (by participant id, or also by country unless ``named_only``)."""
        c, cr = t.consents.c, t.consent_recipients.c
        named = cr.participant_id == audience.participant_id
        if not named_only:
            named = or_(named, cr.country_code == audience.country_code)
        query = select(c.record_pk).where(
            c.origin_id == origin_id,
            c.record_id == consent_record_id,
            *_in_force(audience.active_status, audience.now_us, audience.purpose_bit),
            exists().where(cr.record_pk == c.record_pk, named),
        )
        return self.conn.execute(query).first() is not None

    def records_under_consent(self, origin_id: str, consent_record_id: str) -> list[int]:
        """Record pks of the origin's profiles governed by this consent."""
        p = t.profiles.c
        return list(
            self.conn.execute(
                select(p.record_pk).where(p.origin_id == origin_id, p.consent_record_id == consent_record_id)
            ).scalars()
        )

    # -- delivery ------------------------------------------------------------

    def add_deliveries(self, rows: Sequence[tuple[str, int, int]], now_us: int) -> None:
        """Route envelopes: ``rows`` are (recipient_id, kind, envelope_id)."""
        if not rows:
            return
        if not self.is_sqlite:
            # Sequence numbers must become visible in order: serialise the
            # transactions that allocate them, so that no reader skips a lower
            # number committed after a higher one.
            self.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727465)")
        self.conn.execute(
            insert(t.deliveries),
            [{"recipient_id": r, "kind": k, "envelope_id": e, "routed_at_us": now_us} for r, k, e in rows],
        )

    def cursor(self, recipient_id: str) -> int:
        """The recipient's last acknowledged sequence (0 if none)."""
        value = self.conn.execute(
            select(t.delivery_cursors.c.acked_seq).where(t.delivery_cursors.c.recipient_id == recipient_id)
        ).scalar()
        return int(value or 0)

    def last_sequence(self, recipient_id: str) -> int:
        """The recipient's highest delivery sequence (0 if none)."""
        d = t.deliveries.c
        value = self.conn.execute(
            select(d.seq).where(d.recipient_id == recipient_id).order_by(d.seq.desc()).limit(1)
        ).scalar()
        return int(value or 0)

    def advance_cursor(self, recipient_id: str, seq: int) -> int:
        """Move the cursor forward to ``seq`` (never backward). Returns the cursor after the call."""
        c = t.delivery_cursors.c
        moved = self.conn.execute(
            update(t.delivery_cursors)
            .where(c.recipient_id == recipient_id, c.acked_seq < seq)
            .values(acked_seq=seq)
        ).rowcount
        if not moved:
            present = self.conn.execute(select(c.acked_seq).where(c.recipient_id == recipient_id)).scalar()
            if present is None:
                self.conn.execute(insert(t.delivery_cursors).values(recipient_id=recipient_id, acked_seq=seq))
        return self.cursor(recipient_id)

    def deliveries_between(
        self, recipient_id: str, after_seq: int, up_to_seq: int, kind: int
    ) -> list[DeliveryRow]:
        """The recipient's deliveries of ``kind`` with after_seq < sequence <= up_to_seq."""
        d = t.deliveries.c
        return self._deliveries(recipient_id, after_seq, d.seq <= up_to_seq, d.kind == kind)

    def overdue_deliveries(self, kind: int, routed_before_us: int) -> dict[str, int]:
        """Per recipient, deliveries of ``kind`` routed before the time and not acknowledged yet."""
        d, c = t.deliveries.c, t.delivery_cursors.c
        cursor = select(c.acked_seq).where(c.recipient_id == d.recipient_id).scalar_subquery()
        query = (
            select(d.recipient_id, func.count())
            .where(d.kind == kind, d.routed_at_us < routed_before_us, d.seq > func.coalesce(cursor, 0))
            .group_by(d.recipient_id)
        )
        return {r: int(n) for r, n in self.conn.execute(query)}

    def deliveries_after(self, recipient_id: str, after_seq: int, limit: int) -> list[DeliveryRow]:
        """The recipient's deliveries with sequence above ``after_seq``, oldest first."""
        return self._deliveries(recipient_id, after_seq, limit=limit)

    def _deliveries(
        self, recipient_id: str, after_seq: int, *conditions: Any, limit: int | None = None
    ) -> list[DeliveryRow]:
        d = t.deliveries.c
        query = (
            select(d.seq, d.kind, d.routed_at_us, *_ENVELOPE_COLUMNS)
            .join(t.envelopes, t.envelopes.c.id == d.envelope_id)
            .where(d.recipient_id == recipient_id, d.seq > after_seq, *conditions)
            .order_by(d.seq)
            .limit(limit)
        )
        return [DeliveryRow(row[0], row[1], row[2], _stored(row[3:])) for row in self.conn.execute(query)]

    # -- search --------------------------------------------------------------

    def search_profiles(
        self, f: ProfileFilter, audience: Audience, after_pk: int, limit: int
    ) -> list[tuple[int, str, str, StoredEnvelope]]:
        """Visible profiles matching ``f`` with record pk above ``after_pk``, by pk.

        Returns (record pk, residence country, consent record id, envelope). Visibility: the
        profile's consent record (same origin) is active, inside its validity
        window, grants the audience's purpose and names the caller or its country.
        """
        p, r, c, cr = t.profiles.c, t.records.c, t.consents.c, t.consent_recipients.c
        po = t.profile_occupations.c
        conditions = [
            *_in_force(audience.active_status, audience.now_us, audience.purpose_bit),
            exists().where(
                cr.record_pk == c.record_pk,
                or_(cr.participant_id == audience.participant_id, cr.country_code == audience.country_code),
            ),
        ]
        source: Any = t.profiles
        order: Any = p.record_pk
        if len(f.isco08_prefixes) == 1:
            # One ISCO-08 group: its members come from the group's index in record order, so a page
            # reads about as many profiles as it returns, however rare the group is in the pool.
            group = f.isco08_prefixes[0]
            source = t.profile_occupations.join(t.profiles, p.record_pk == po.record_pk)
            order = po.record_pk
            conditions += [_isco_group(po.isco08_code, group) == group, po.record_pk > after_pk]
            if len(group) < 4:
                # A profile with two occupations of the group comes once: with the lower code.
                other = t.profile_occupations.alias()
                conditions.append(
                    ~exists().where(
                        other.c.record_pk == po.record_pk,
                        _isco_group(other.c.isco08_code, group) == group,
                        other.c.isco08_code < po.isco08_code,
                    )
                )
        else:
            conditions.append(p.record_pk > after_pk)
            if f.isco08_prefixes:
                conditions.append(
                    exists().where(
                        po.record_pk == p.record_pk,
                        or_(*(_isco_group(po.isco08_code, x) == x for x in f.isco08_prefixes)),
                    )
                )
        for lang, level in f.languages:
            pl = t.profile_languages.alias()
            conditions.append(
                exists().where(pl.c.record_pk == p.record_pk, pl.c.language_code == lang, pl.c.level >= level)
            )
        if f.destination_country:
            pd = t.profile_destinations.c
            conditions.append(
                exists().where(pd.record_pk == p.record_pk, pd.country_code == f.destination_country)
            )
        if f.mobility_mask:
            conditions.append(p.mobility_mask.op("&")(f.mobility_mask) != 0)
        if f.available_by is not None:
            conditions.append(or_(p.available_from.is_(None), p.available_from <= f.available_by))
        if f.origin_countries:
            conditions.append(p.residence_country.in_(f.origin_countries))
        if f.record_pk is not None:
            conditions.append(p.record_pk == f.record_pk)
        query = (
            select(p.record_pk, p.residence_country, p.consent_record_id, *_ENVELOPE_COLUMNS)
            .select_from(source)
            .join(t.records, r.id == p.record_pk)
            .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(*conditions)
            .order_by(order)
            .limit(limit)
        )
        if not self.is_sqlite:
            # PostgreSQL expects the filters to leave few profiles, so it reads the whole group
            # (bitmap scan, sorted, in parallel) where walking its index in record order stops after
            # one page: at a million profiles, 122 ms against 23 at p95 (in process, the minor
            # groups of the synthetic pool, after ANALYZE). For this transaction only.
            self.conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            self.conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        return [(row[0], row[1], row[2], _stored(row[3:])) for row in self.conn.execute(query)]

    def search_offers(self, f: OfferFilter, after_pk: int, limit: int) -> list[tuple[int, StoredEnvelope]]:
        """Offers matching ``f`` with record pk above ``after_pk``, by pk."""
        o = t.offers.c
        conditions: list[Any] = [o.record_pk > after_pk]
        if f.isco08_prefixes:
            conditions.append(or_(*(o.isco08_code.startswith(x) for x in f.isco08_prefixes)))
        if f.work_country:
            conditions.append(o.work_country == f.work_country)
        if f.mobility_types:
            conditions.append(o.mobility_type.in_(f.mobility_types))
        if f.target_country:
            ot = t.offer_targets.c
            conditions.append(
                exists().where(ot.record_pk == o.record_pk, ot.country_code == f.target_country)
            )
        if f.open_on is not None:
            conditions.append(or_(o.deadline.is_(None), o.deadline >= f.open_on))
        query = _offers_with_envelopes(conditions).order_by(o.record_pk).limit(limit)
        return [(row[0], _stored(row[1:])) for row in self.conn.execute(query)]

    # -- matching --------------------------------------------------------------

    def match_candidates(
        self,
        audience: Audience,
        own_origin: str | None,
        offer: matching.Offer,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[MatchRow]:
        """A page of the profiles that pass the hard constraints of ``offer`` and whose consent allows
        matching, best score first (equal scores by record), after the (score, record pk) ``after``.

        The score is computed by the database (hub.domain.matching's rules, in SQL), over every
        profile of the offer's ISCO-08 sub-major group, so only the page is read back. With
        ``own_origin``, that origin's own candidates under an active matching consent; else those
        whose consent also names the audience (participant or country).
        """
        query = self._scored(offer, self._consented(audience, own_origin), after, limit)
        return self._match_rows(list(self.conn.execute(query)), offer)

    def ranked_candidates(
        self,
        audience: Audience,
        own_origin: str | None,
        offer: matching.Offer,
        state: RankingState,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[MatchRow] | None:
        """The page ``match_candidates`` gives, read from the offer's kept ranking; None when the
        ranking cannot tell it (the page reaches past the candidates kept).

        Why it is exact: the ranking holds the best candidates, by the profiles' own facts, of every
        profile whose current version is at or below the watermark, up to the boundary. A profile's
        facts change only with a new version, which gets a newer envelope. So every candidate that
        ranks before the boundary is either kept (and still at the kept version) or newer than the
        watermark; the second kind is scored here. Consent, which changes without a new profile
        version, is checked on every read, for both kinds.
        """
        consented = self._consented(audience, own_origin)
        mr, p, r = t.match_rankings.c, t.profiles.c, t.records.c
        c = t.consents.c
        kept = (
            select(mr.profile_pk, p.origin_id, p.residence_country, p.consent_record_id, -mr.minus_score)
            .select_from(t.match_rankings)
            .join(t.profiles, p.record_pk == mr.profile_pk)
            .join(t.records, r.id == mr.profile_pk)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(mr.offer_pk == offer.pk, r.envelope_id <= state.watermark, *consented)
        )
        if after is not None:
            kept = kept.where(
                or_(mr.minus_score > -after[0], and_(mr.minus_score == -after[0], mr.profile_pk > after[1]))
            )
        kept = kept.order_by(mr.minus_score, mr.profile_pk).limit(limit)
        newer = select(r.id).where(r.envelope_id > state.watermark, r.payload_type == PROFILE_TYPE)
        rows = {row[0]: row for row in self.conn.execute(kept)}
        if self.conn.execute(select(newer.exists())).scalar():
            # Building this query costs more than running it on a few profiles: only when needed.
            rows.update(
                (row[0], row)
                for row in self.conn.execute(self._scored(offer, consented, after, limit, among=newer))
            )
        ranked = sorted(rows.values(), key=lambda row: (-row[4], row[0]))
        if state.boundary is not None:
            last = (-state.boundary[0], state.boundary[1])
            ranked = [row for row in ranked if (-row[4], row[0]) <= last]
            if len(ranked) < limit:
                return None
        return self._match_rows(ranked[:limit], offer)

    def rank_offer(
        self, offer: matching.Offer, offer_revision: int, keep: int
    ) -> tuple[RankingState, list[tuple[int, int]]]:
        """The best ``keep`` candidates of ``offer`` by the profiles' own facts, consent aside:
        ``(state, [(profile pk, score), ...])``. Keep them with ``save_ranking``."""
        watermark = self.publication_watermark()
        # SQLite reads one snapshot, which holds no envelope above the watermark; PostgreSQL reads
        # what is committed when each statement starts, so later profiles are left out by hand.
        query = self._scored(offer, [], None, keep, up_to=None if self.is_sqlite else watermark)
        rows = [(int(row[0]), int(row[4])) for row in self.conn.execute(query)]
        boundary = (rows[-1][1], rows[-1][0]) if len(rows) == keep else None
        return RankingState(offer_revision, watermark, boundary), rows

    def publication_watermark(self) -> int:
        """An envelope id such that every envelope at or below it is already stored (committed) and
        every later one will be above it.

        SQLite gives out ids in commit order (under its write lock). PostgreSQL's sequence does
        not: a publication may take an id, then commit after a later one. Publications hold
        RANKING_LOCK shared from taking their ids to their commit; taking it exclusively here
        waits for those in flight, after which the largest id stored is such a point."""
        if self.is_sqlite:
            return self.newest_envelope()
        self.conn.exec_driver_sql(f"SELECT pg_advisory_lock({RANKING_LOCK})")
        try:
            return self.newest_envelope()
        finally:
            self.conn.exec_driver_sql(f"SELECT pg_advisory_unlock({RANKING_LOCK})")

    def ranking_state(self, offer_pk: int) -> RankingState | None:
        s = t.match_ranking_state.c
        row = self.conn.execute(
            select(s.offer_revision, s.watermark, s.boundary_score, s.boundary_pk).where(
                s.offer_pk == offer_pk
            )
        ).first()
        if row is None:
            return None
        return RankingState(row[0], row[1], None if row[2] is None else (row[2], row[3]))

    def save_ranking(
        self, offer_pk: int, state: RankingState, rows: Sequence[tuple[int, int]], now_us: int
    ) -> bool:
        """Keep a ranking of an offer, unless a ranking at least as recent is kept already (another
        hub process computed it meanwhile). Returns whether it was kept."""
        current = self.ranking_state(offer_pk)
        if current is not None and (current.offer_revision, current.watermark) >= (
            state.offer_revision,
            state.watermark,
        ):
            return False
        self._drop_rankings(offers=[offer_pk])
        self.conn.execute(
            insert(t.match_ranking_state).values(
                offer_pk=offer_pk,
                offer_revision=state.offer_revision,
                watermark=state.watermark,
                boundary_score=state.boundary[0] if state.boundary else None,
                boundary_pk=state.boundary[1] if state.boundary else None,
                computed_at_us=now_us,
            )
        )
        self._insert_many(
            t.match_rankings,
            [{"offer_pk": offer_pk, "profile_pk": pk, "minus_score": -score} for pk, score in rows],
        )
        return True

    def offers_to_rank(
        self, open_on: date, fresh_within: int, limit: int | None, leave_aside: Sequence[int] = ()
    ) -> list[int]:
        """Offers open on ``open_on`` (record pks) with no ranking, a ranking of an earlier version,
        or one more than ``fresh_within`` envelopes behind the newest; unranked first, then the
        oldest rankings; at most ``limit`` (None: all); none of ``leave_aside``."""
        o, r, s = t.offers.c, t.records.c, t.match_ranking_state.c
        newest = self.newest_envelope()
        query = (
            select(o.record_pk)
            .select_from(t.offers)
            .join(t.records, r.id == o.record_pk)
            .outerjoin(t.match_ranking_state, s.offer_pk == o.record_pk)
            .where(
                or_(o.deadline.is_(None), o.deadline >= open_on),
                or_(
                    s.offer_pk.is_(None),
                    s.offer_revision != r.envelope_id,
                    s.watermark < newest - fresh_within,
                ),
                *([o.record_pk.not_in(list(leave_aside))] if leave_aside else []),
            )
            .order_by(s.watermark.is_not(None), s.watermark, o.record_pk)
            .limit(limit)
        )
        return [int(pk) for pk in self.conn.execute(query).scalars()]

    def newest_envelope(self) -> int:
        """The largest envelope id stored (0 when none)."""
        return int(self.conn.execute(select(func.coalesce(func.max(t.envelopes.c.id), 0))).scalar_one())

    def _drop_rankings(self, offers: Sequence[int] = (), profiles: Sequence[int] = ()) -> None:
        mr, s = t.match_rankings.c, t.match_ranking_state.c
        for chunk in _chunks(offers, 500):
            self.conn.execute(delete(t.match_rankings).where(mr.offer_pk.in_(chunk)))
            self.conn.execute(delete(t.match_ranking_state).where(s.offer_pk.in_(chunk)))
        for chunk in _chunks(profiles, 500):
            self.conn.execute(delete(t.match_rankings).where(mr.profile_pk.in_(chunk)))

    def _consented(self, audience: Audience, own_origin: str | None) -> list[Any]:
        """Conditions on ``profiles`` and ``consents``: the consent allows ``audience`` to match now."""
        p, c, cr = t.profiles.c, t.consents.c, t.consent_recipients.c
        conditions = _in_force(audience.active_status, audience.now_us, audience.purpose_bit)
        if own_origin is not None:
            conditions.append(p.origin_id == own_origin)
        else:
            conditions.append(
                exists().where(
                    cr.record_pk == c.record_pk,
                    or_(
                        cr.participant_id == audience.participant_id, cr.country_code == audience.country_code
                    ),
                )
            )
        return conditions

    def _scored(
        self,
        offer: matching.Offer,
        consented: list[Any],
        after: tuple[int, int] | None,
        limit: int,
        among: Any = None,
        up_to: int | None = None,
    ) -> Select[Any]:
        """The best ``limit`` profiles for ``offer`` after ``after``, scored in SQL:
        ``(record pk, origin, residence country, consent record id, score)``.

        ``consented``: conditions on profiles and consents (none: consent aside, as a kept ranking
        is computed). ``among``: only the profiles whose record pk it selects. ``up_to``: only
        profiles whose current version's envelope is at or below it."""
        p, c = t.profiles.c, t.consents.c
        po, pl, pd = t.profile_occupations.c, t.profile_languages, t.profile_destinations.c
        ps, pe = t.profile_skills.c, t.profile_experience.c
        conditions: list[Any] = [
            *consented,
            or_(
                ~exists().where(pd.record_pk == p.record_pk),
                exists().where(pd.record_pk == p.record_pk, pd.country_code == offer.work_country),
            ),
            or_(p.mobility_mask == 0, p.mobility_mask.op("&")(mobility_bit(offer.mobility_type)) != 0),
        ]
        for code, level in offer.languages:
            alias = pl.alias()
            conditions.append(
                exists().where(
                    alias.c.record_pk == p.record_pk, alias.c.language_code == code, alias.c.level >= level
                )
            )
        if offer.start_date is not None:
            conditions.append(or_(p.available_from.is_(None), p.available_from <= offer.start_date))
        # Occupation points: the closest of the profile's occupations (no row: outside the sub-major
        # group), by the leading digits both codes have and agree on, as matching._fit counts them
        # (a code known only at a coarser group, the profile's or the offer's, shares no more).
        code = offer.isco08_code
        fit: Any = literal(matching.OCCUPATION_POINTS[matching.SUB_MAJOR])
        if len(code) >= 3:
            fit = case(
                *(
                    [(po.isco08_code == code, matching.OCCUPATION_POINTS[matching.UNIT])]
                    if len(code) == 4
                    else []
                ),
                (
                    and_(func.length(po.isco08_code) >= 3, func.substr(po.isco08_code, 1, 3) == code[:3]),
                    matching.OCCUPATION_POINTS[matching.MINOR],
                ),
                else_=matching.OCCUPATION_POINTS[matching.SUB_MAJOR],
            )
        in_group = [_isco_group(po.isco08_code, offer.isco08_code[:2]) == offer.isco08_code[:2]]
        if among is not None:
            in_group.append(po.record_pk.in_(among))
        occupation = (
            select(po.record_pk.label("pk"), func.max(fit).label("points"))
            .where(*in_group)
            .group_by(po.record_pk)
            .subquery()
        )
        # The parts of the score in integers, as matching.skill_points and experience_points compute
        # them: integer division of non-negative integers rounds down in SQLite and PostgreSQL alike.
        months = func.coalesce(pe.months, 0)
        required = offer.required_experience_months
        experience_points: Any = (
            literal(matching.EXPERIENCE_POINTS)
            if not required
            else case(
                (months >= required, matching.EXPERIENCE_POINTS),
                (months <= 0, 0),
                else_=(months * matching.EXPERIENCE_POINTS) // required,
            )
        )
        source: Any = t.profiles.join(occupation, occupation.c.pk == p.record_pk)
        if consented:
            source = source.join(
                t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id)
            )
        if up_to is not None:
            r = t.records.c
            source = source.join(t.records, r.id == p.record_pk)
            conditions.append(r.envelope_id <= up_to)
        source = source.outerjoin(t.profile_experience, pe.record_pk == p.record_pk)
        skill_points: Any = literal(matching.SKILL_POINTS)
        if offer.skills and among is not None:
            # A few profiles: each one's skills are looked up (reading every holder of the skills
            # across the pool, as below, would cost more than the rest of the query).
            n = (
                select(func.count(func.distinct(ps.skill)))
                .where(ps.record_pk == p.record_pk, ps.skill.in_(list(offer.skills)))
                .scalar_subquery()
            )
            skill_points = (n * matching.SKILL_POINTS) // len(offer.skills)
        elif offer.skills:
            held = (
                select(ps.record_pk.label("pk"), func.count(func.distinct(ps.skill)).label("n"))
                .where(ps.skill.in_(list(offer.skills)))
                .group_by(ps.record_pk)
                .subquery()
            )
            source = source.outerjoin(held, held.c.pk == p.record_pk)
            skill_points = (func.coalesce(held.c.n, 0) * matching.SKILL_POINTS) // len(offer.skills)
        score = (occupation.c.points + skill_points + experience_points).label("score")
        ranked = (
            select(p.record_pk, p.origin_id, p.residence_country, p.consent_record_id, score)
            .select_from(source)
            .where(*conditions)
            .subquery()
        )
        query = select(ranked)
        if after is not None:
            query = query.where(
                or_(
                    ranked.c.score < after[0], and_(ranked.c.score == after[0], ranked.c.record_pk > after[1])
                )
            )
        return query.order_by(ranked.c.score.desc(), ranked.c.record_pk).limit(limit)

    def _match_rows(self, rows: Sequence[Any], offer: matching.Offer) -> list[MatchRow]:
        facts = self._facts([row[0] for row in rows], offer)
        return [
            (facts[pk], origin, residence, consent_id, int(points))
            for pk, origin, residence, consent_id, points in rows
        ]

    def _facts(self, pks: list[int], offer: matching.Offer | None = None) -> dict[int, matching.Candidate]:
        """The matching facts of some profiles (skills: only those ``offer`` requires, or all of them)."""
        if not pks:
            return {}
        p, po, pl, pd = t.profiles.c, t.profile_occupations.c, t.profile_languages.c, t.profile_destinations.c
        ps, pe = t.profile_skills.c, t.profile_experience.c
        base = {
            pk: (mask, available)
            for pk, mask, available in self.conn.execute(
                select(p.record_pk, p.mobility_mask, p.available_from).where(p.record_pk.in_(pks))
            )
        }
        occupations: dict[int, list[str]] = {}
        for pk, code in self.conn.execute(select(po.record_pk, po.isco08_code).where(po.record_pk.in_(pks))):
            occupations.setdefault(pk, []).append(code)
        languages: dict[int, dict[str, int]] = {}
        for pk, code, level in self.conn.execute(
            select(pl.record_pk, pl.language_code, pl.level).where(pl.record_pk.in_(pks))
        ):
            languages.setdefault(pk, {})[code] = level
        skills: dict[int, set[str]] = {}
        query = select(ps.record_pk, ps.skill).where(ps.record_pk.in_(pks))
        if offer is not None:
            query = query.where(ps.skill.in_(list(offer.skills)))
        for pk, skill in self.conn.execute(query):
            skills.setdefault(pk, set()).add(skill)
        experience = dict(
            self.conn.execute(select(pe.record_pk, pe.months).where(pe.record_pk.in_(pks))).all()
        )
        destinations: dict[int, list[str]] = {}
        for pk, code in self.conn.execute(select(pd.record_pk, pd.country_code).where(pd.record_pk.in_(pks))):
            destinations.setdefault(pk, []).append(code)
        return {
            pk: matching.Candidate(
                pk=pk,
                isco08_codes=tuple(occupations.get(pk, ())),
                languages=languages.get(pk, {}),
                destinations=tuple(destinations.get(pk, ())),
                mobility_mask=mask,
                available_from=available,
                skills=frozenset(skills.get(pk, ())),
                experience_months=int(experience.get(pk, 0)),
            )
            for pk, (mask, available) in base.items()
        }

    def candidate_facts(self, record_pk: int) -> tuple[matching.Candidate, str]:
        """The matching facts of one profile (its full skill list), and its residence country."""
        residence = self.conn.execute(
            select(t.profiles.c.residence_country).where(t.profiles.c.record_pk == record_pk)
        ).scalar_one()
        return self._facts([record_pk])[record_pk], residence

    def offers_for(
        self, candidate: matching.Candidate, residence_country: str, open_on: date
    ) -> list[tuple[int, StoredEnvelope]]:
        """Open offers within the candidate's sub-major groups, destinations, mobility types and
        availability, addressed to its residence country (or to no country in particular)."""
        o, ot = t.offers.c, t.offer_targets.c
        sub_majors = sorted({code[:2] for code in candidate.isco08_codes})
        if not sub_majors:
            return []
        conditions: list[Any] = [
            or_(*(o.isco08_code.startswith(x) for x in sub_majors)),
            or_(o.deadline.is_(None), o.deadline >= open_on),
            or_(
                ~exists().where(ot.record_pk == o.record_pk),
                exists().where(ot.record_pk == o.record_pk, ot.country_code == residence_country),
            ),
        ]
        if candidate.destinations:
            conditions.append(o.work_country.in_(candidate.destinations))
        if candidate.mobility_mask:
            wanted = [m for m in range(1, 5) if candidate.mobility_mask & mobility_bit(m)]
            conditions.append(o.mobility_type.in_(wanted))
        if candidate.available_from is not None:
            conditions.append(or_(o.start_date.is_(None), o.start_date >= candidate.available_from))
        return [(row[0], _stored(row[1:])) for row in self.conn.execute(_offers_with_envelopes(conditions))]

    def consent_grants(
        self, origin_id: str, consent_record_id: str, purpose_bit: int, now_us: int, active: int
    ) -> bool:
        """Whether the origin's consent is active now and grants the purpose (whoever it names)."""
        c = t.consents.c
        query = select(c.record_pk).where(
            c.origin_id == origin_id,
            c.record_id == consent_record_id,
            *_in_force(active, now_us, purpose_bit),
        )
        return self.conn.execute(query).first() is not None

    def envelopes_of(self, record_pks: Sequence[int]) -> dict[int, StoredEnvelope]:
        """Current envelopes of records, by record pk."""
        r = t.records.c
        out: dict[int, StoredEnvelope] = {}
        for chunk in _chunks(list(record_pks), 500):
            query = (
                select(r.id, *_ENVELOPE_COLUMNS)
                .select_from(t.records)
                .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
                .where(r.id.in_(chunk))
            )
            out.update({row[0]: _stored(row[1:]) for row in self.conn.execute(query)})
        return out

    # -- mobility cycle --------------------------------------------------------

    def profile_consent(self, origin_id: str, profile_record_id: str) -> str | None:
        """The consent record id that governs an origin's current profile, or None."""
        p, r = t.profiles.c, t.records.c
        query = (
            select(p.consent_record_id)
            .select_from(t.profiles)
            .join(t.records, r.id == p.record_pk)
            .where(r.origin_id == origin_id, r.record_id == profile_record_id)
        )
        return self.conn.execute(query).scalar()

    def indexed_offer_revision(self, record_pk: int) -> int | None:
        """The current envelope id of an offer in the offer index (None: not there, e.g. withdrawn)."""
        o, r = t.offers.c, t.records.c
        return self.conn.execute(
            select(r.envelope_id).join(t.offers, o.record_pk == r.id).where(r.id == record_pk)
        ).scalar()

    def offer_row(self, record_pk: int) -> Any:
        """An offer's index row (isco08_code, work_country, mobility_type, start_date, deadline, …)."""
        return self.conn.execute(select(t.offers).where(t.offers.c.record_pk == record_pk)).one()

    def profile_row(self, record_pk: int) -> Any:
        """A profile's index row (residence_country, consent_record_id, …)."""
        return self.conn.execute(select(t.profiles).where(t.profiles.c.record_pk == record_pk)).one()

    def cycle(self, origin_id: str, application_id: str, lock: bool = False) -> CycleRow | None:
        """The cycle an origin SPE opened under ``application_id`` (locked for update if asked)."""
        mc = t.mobility_cycles.c
        query = select(t.mobility_cycles).where(
            mc.origin_id == origin_id, mc.application_id == application_id
        )
        if lock and not self.is_sqlite:  # SQLite's writers are serialised already (BEGIN IMMEDIATE)
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return CycleRow(*row) if row else None

    def open_cycle(self, state: int, now_us: int, **columns: Any) -> int:
        """Create a cycle in ``state`` (columns: see schema.mobility_cycles). Returns its id."""
        values = {**columns, "state": state, "updated_at_us": now_us}
        return int(self.conn.execute(insert(t.mobility_cycles).values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def set_cycle_state(self, cycle_id: int, state: int, now_us: int) -> None:
        mc = t.mobility_cycles.c
        self.conn.execute(
            update(t.mobility_cycles).where(mc.id == cycle_id).values(state=state, updated_at_us=now_us)
        )

    def add_cycle_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Index stored event records: record_pk, cycle_id, type, occurred_on, reintegration_outcome."""
        if rows:
            self.conn.execute(insert(t.mobility_events), list(rows))

    def record_pks(self, origin_id: str, payload_type: int, record_ids: Sequence[str]) -> dict[str, int]:
        """Current record pks of some of an origin's records, by record id."""
        r = t.records.c
        out: dict[str, int] = {}
        for chunk in _chunks(sorted(set(record_ids)), 500):
            query = select(r.record_id, r.id).where(
                r.origin_id == origin_id, r.payload_type == payload_type, r.record_id.in_(chunk)
            )
            out.update({rid: pk for rid, pk in self.conn.execute(query)})
        return out

    def cycles_of(
        self,
        party_id: str,
        profile_record_id: str = "",
        state: int = 0,
        before_id: int = 0,
        limit: int = 20,
        cycle: tuple[str, str] | None = None,
    ) -> list[CycleRow]:
        """Cycles the participant is a party to (opened them, or published the offer), newest first."""
        mc = t.mobility_cycles.c
        conditions: list[Any] = [
            or_(mc.origin_id == party_id, mc.offer_origin_id == party_id),
            mc.consent_record_id != "",  # a cycle whose candidate was erased is no one's any more
        ]
        if cycle is not None:
            conditions += [mc.origin_id == cycle[0], mc.application_id == cycle[1]]
        if profile_record_id:
            conditions += [mc.origin_id == party_id, mc.profile_record_id == profile_record_id]
        if state:
            conditions.append(mc.state == state)
        if before_id:
            conditions.append(mc.id < before_id)
        query = select(t.mobility_cycles).where(*conditions).order_by(mc.id.desc()).limit(limit)
        return [CycleRow(*row) for row in self.conn.execute(query)]

    def cycles_under_consent(self, origin_id: str, consent_record_id: str) -> list[CycleRow]:
        """The cycles an origin SPE opened for the candidate of this consent."""
        mc = t.mobility_cycles.c
        query = select(t.mobility_cycles).where(
            mc.origin_id == origin_id, mc.consent_record_id == consent_record_id
        )
        return [CycleRow(*row) for row in self.conn.execute(query)]

    def cycle_event_records(self, cycle_ids: Sequence[int]) -> list[tuple[int, int, int, str]]:
        """(cycle id, record pk, envelope id, origin) of every event of the cycles."""
        me, r = t.mobility_events.c, t.records.c
        out: list[tuple[int, int, int, str]] = []
        for chunk in _chunks(list(cycle_ids), 500):
            query = (
                select(me.cycle_id, r.id, r.envelope_id, r.origin_id)
                .join(t.records, r.id == me.record_pk)
                .where(me.cycle_id.in_(chunk))
                .order_by(me.cycle_id, r.id)
            )
            out += [(int(c), int(pk), int(e), str(o)) for c, pk, e, o in self.conn.execute(query)]
        return out

    def unlink_cycles(self, cycle_ids: Sequence[int], event_envelope_ids: Sequence[int]) -> None:
        """Cut the erased candidate out of their cycles: the application and profile ids and the
        consent go (the corridor, state and event types stay, as counts), and any event payload
        still stored in clear (published before events were sealed) is emptied."""
        mc, e = t.mobility_cycles.c, t.envelopes.c
        for cycle_id in cycle_ids:
            self.conn.execute(
                update(t.mobility_cycles)
                .where(mc.id == cycle_id)
                .values(application_id=f"erased-{cycle_id}", profile_record_id="", consent_record_id="")
            )
        for chunk in _chunks(list(event_envelope_ids), 500):
            self.conn.execute(
                update(t.envelopes)
                .where(e.id.in_(chunk), func.substr(e.payload, 1, 1) != b"\x00")
                .values(payload=b"")
            )

    def cycle_events(self, cycle_ids: Sequence[int]) -> dict[int, list[StoredEnvelope]]:
        """The signed events of each cycle, oldest first."""
        me, r = t.mobility_events.c, t.records.c
        out: dict[int, list[StoredEnvelope]] = {cid: [] for cid in cycle_ids}
        for chunk in _chunks(list(cycle_ids), 500):
            query = (
                select(me.cycle_id, *_ENVELOPE_COLUMNS)
                .select_from(t.mobility_events)
                .join(t.records, r.id == me.record_pk)
                .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
                .where(me.cycle_id.in_(chunk))
                .order_by(me.cycle_id, me.record_pk)
            )
            for row in self.conn.execute(query):
                out[row[0]].append(_stored(row[1:]))
        return out

    # -- operations ------------------------------------------------------------

    def delivery_backlogs(self) -> dict[str, int]:
        """Deliveries routed to each recipient and not yet acknowledged (0 for one that is up to date)."""
        d, cur = t.deliveries.c, t.delivery_cursors.c
        pending = case((d.seq > func.coalesce(cur.acked_seq, 0), 1), else_=0)
        query = (
            select(d.recipient_id, func.sum(pending))
            .select_from(t.deliveries.outerjoin(t.delivery_cursors, cur.recipient_id == d.recipient_id))
            .group_by(d.recipient_id)
        )
        return {recipient: int(n) for recipient, n in self.conn.execute(query)}

    def pool_sizes(self, purpose_bit: int, active: int, now_us: int) -> dict[str, int]:
        """Live profiles in the pool, by residence country, counting only those under a consent
        that is active now and grants ``purpose_bit`` (statistics), as ``statistics_rows`` does."""
        p, c = t.profiles.c, t.consents.c
        query = (
            select(p.residence_country, func.count())
            .select_from(t.profiles)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(*_in_force(active, now_us, purpose_bit))
            .group_by(p.residence_country)
        )
        return {country: int(n) for country, n in self.conn.execute(query).all()}

    def last_checkpoint_us(self) -> int | None:
        c = t.audit_checkpoints.c
        return self.conn.execute(select(func.max(c.at_us))).scalar()

    def first_audit_us(self) -> int | None:
        a = t.audit_log.c
        return self.conn.execute(select(func.min(a.at_us))).scalar()

    # -- statistics ------------------------------------------------------------

    def statistics_rows(
        self, purpose_bit: int, active: int, now_us: int
    ) -> Iterator[tuple[str, str, str, int, str, int | date, int]]:
        """Raw rows for corridor statistics, each (kind, origin country, destination country or "",
        mobility type or 0, ISCO-08 code, instant in µs or civil date, count).

        Profiles and cycle events count only under a consent that is active now and grants
        ``purpose_bit`` (statistics); offers carry no personal data and always count.
        A profile gives one row per destination it names (or one with ""), with its mobility mask.
        """
        p, c, e, r = t.profiles.c, t.consents.c, t.envelopes.c, t.records.c
        consent_ok = and_(*_in_force(active, now_us, purpose_bit))
        po, pd = t.profile_occupations.c, t.profile_destinations.c
        occupation = select(func.min(po.isco08_code)).where(po.record_pk == p.record_pk).scalar_subquery()
        profiles = (
            select(p.residence_country, pd.country_code, p.mobility_mask, occupation, e.received_at_us)
            .select_from(t.profiles)
            .join(t.records, r.id == p.record_pk)
            .join(t.envelopes, e.id == r.envelope_id)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .outerjoin(t.profile_destinations, pd.record_pk == p.record_pk)
            .where(consent_ok)
        )
        for residence, destination, mask, isco, received in self.conn.execute(profiles):
            yield ("profile", residence, destination or "", mask, isco or "", received, -1)
        o, ot = t.offers.c, t.offer_targets.c
        offers = (
            select(ot.country_code, o.work_country, o.mobility_type, o.isco08_code, e.received_at_us)
            .select_from(t.offers)
            .join(t.records, r.id == o.record_pk)
            .join(t.envelopes, e.id == r.envelope_id)
            .outerjoin(t.offer_targets, ot.record_pk == o.record_pk)
        )
        for target, work, mobility, isco, received in self.conn.execute(offers):
            yield ("offer", target or "", work, mobility, isco, received, 1)
        mc, me = t.mobility_cycles.c, t.mobility_events.c
        events = (
            select(
                me.type,
                mc.origin_country,
                mc.destination_country,
                mc.mobility_type,
                mc.isco08_code,
                me.occurred_on,
                func.count(),
            )
            .select_from(t.mobility_events)
            .join(t.mobility_cycles, mc.id == me.cycle_id)
            .join(t.consents, and_(c.origin_id == mc.origin_id, c.record_id == mc.consent_record_id))
            .where(consent_ok)
            .group_by(
                me.type,
                mc.origin_country,
                mc.destination_country,
                mc.mobility_type,
                mc.isco08_code,
                me.occurred_on,
            )
        )
        for kind, origin, destination, mobility, isco, day, n in self.conn.execute(events):
            yield (f"event:{kind}", origin, destination, mobility, isco, day, n)

    def count_envelopes(self, record_id: str | None = None) -> int:
        """How many envelopes are stored (for one record id if given)."""
        query = select(func.count()).select_from(t.envelopes)
        if record_id is not None:
            query = query.where(t.envelopes.c.record_id == record_id)
        return int(self.conn.execute(query).scalar() or 0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _isco_group(code: Any, group: str) -> Any:
    """The ISCO-08 group of ``code`` at the level of ``group`` (1 to 4 digits), as the group indexes
    of profile_occupations have it: ``_isco_group(code, "921") == "921"`` reads one index range."""
    # Literal positions: an index on an expression serves a query only if the query writes it the same.
    return (
        code if len(group) == 4 else func.substr(code, literal_column("1"), literal_column(str(len(group))))
    )


def _in_force(active: int, now_us: int, purpose_bit: int) -> list[Any]:
    """Conditions on ``consents``: the consent is active now, inside its validity, and grants the purpose."""
    c = t.consents.c
    return [
        c.status == active,
        c.valid_from_us <= now_us,
        c.valid_until_us > now_us,
        c.purpose_mask.op("&")(purpose_bit) != 0,
    ]


def _db_reason(exc: DBAPIError) -> str:
    """What the database said, without values: SQLite's error text (it quotes none), or
    PostgreSQL's SQLSTATE (its messages can quote key values, so they stay out)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return f"{type(orig).__name__}, SQLSTATE {sqlstate}"
    if type(orig).__module__.startswith("sqlite3"):
        return f"{type(orig).__name__}: {str(orig)[:80]}"
    return type(orig).__name__


def _offers_with_envelopes(conditions: Sequence[Any]) -> Select[Any]:
    """Offers (record pk and current envelope) meeting ``conditions``."""
    o, r = t.offers.c, t.records.c
    return (
        select(o.record_pk, *_ENVELOPE_COLUMNS)
        .select_from(t.offers)
        .join(t.records, r.id == o.record_pk)
        .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
        .where(*conditions)
    )


def _us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
