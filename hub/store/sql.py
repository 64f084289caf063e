"""What the repositories share: the transaction they work in, fast inserts, and SQL fragments."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Select,
    any_,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from hub.domain.records import PayloadKind
from hub.domain.stored import StoredEnvelope
from hub.store import schema as t

PROFILE_TYPE = PayloadKind.CANDIDATE_PROFILE.payload_type
RANKING_LOCK = 727468
"""PostgreSQL advisory lock: publications hold it shared, a ranking's watermark exclusively."""
AUDIT_LOCK = 727466
"""PostgreSQL advisory lock: one audit appender at a time (each entry hashes the one before it)."""
DELIVERY_LOCK = 727465
"""PostgreSQL advisory lock: delivery sequence numbers become visible in order."""
METRICS_LOCK = 727469
"""PostgreSQL advisory lock (with the schema's hash): held by the one process that computes the
gauges read from the store (hub.store.leader)."""

ENVELOPE_COLUMNS = (
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


def stored(row: Any) -> StoredEnvelope:
    """The StoredEnvelope of a row that starts with ENVELOPE_COLUMNS."""
    return StoredEnvelope(*row[: len(ENVELOPE_COLUMNS)])


class Repository:
    """Base of the repositories and query objects: one connection inside one transaction."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    def _among(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values``: on PostgreSQL one array parameter (``= ANY``), so the statement is
        the same text whatever the number of values and the driver reuses its parsing; an IN list
        of 50 keys cost more in the driver and SQLAlchemy than the query took to run."""
        if self.is_sqlite:
            return column.in_(list(values))
        return column == any_(literal(list(values), ARRAY(column.type)))

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


def newest_envelope(conn: Connection) -> int:
    """The largest envelope id stored (0 when none)."""
    return int(conn.execute(select(func.coalesce(func.max(t.envelopes.c.id), 0))).scalar_one())


def drop_rankings(conn: Connection, offers: Sequence[int] = (), profiles: Sequence[int] = ()) -> None:
    """Forget the kept match rankings of these offers, and these profiles' places in any ranking."""
    mr, s = t.match_rankings.c, t.match_ranking_state.c
    for chunk in chunks(offers, 500):
        conn.execute(delete(t.match_rankings).where(mr.offer_pk.in_(chunk)))
        conn.execute(delete(t.match_ranking_state).where(s.offer_pk.in_(chunk)))
    for chunk in chunks(profiles, 500):
        conn.execute(delete(t.match_rankings).where(mr.profile_pk.in_(chunk)))


def isco_group(code: Any, group: str) -> Any:
    """The ISCO-08 group of ``code`` at the level of ``group`` (1 to 4 digits), as the group indexes
    of profile_occupations have it: ``isco_group(code, "921") == "921"`` reads one index range."""
    # Literal positions: an index on an expression serves a query only if the query writes it the same.
    return (
        code if len(group) == 4 else func.substr(code, literal_column("1"), literal_column(str(len(group))))
    )


def in_force(active: int, now_us: int, purpose_bit: int) -> list[Any]:
    """Conditions on ``consents``: the consent is active now, inside its validity, and grants the purpose."""
    c = t.consents.c
    return [
        c.status == active,
        c.valid_from_us <= now_us,
        c.valid_until_us > now_us,
        c.purpose_mask.op("&")(purpose_bit) != 0,
    ]


def names_recipient(participant_id: str, country_code: str) -> Any:
    """Condition on ``consents``: the consent names the participant, or its country, among its
    recipients."""
    c, cr = t.consents.c, t.consent_recipients.c
    return exists().where(
        cr.record_pk == c.record_pk,
        or_(cr.participant_id == participant_id, cr.country_code == country_code),
    )


def languages_held(languages: Iterable[tuple[str, int]]) -> list[Any]:
    """Conditions on ``profiles``: the profile holds each (language code, CEFR level) at or above
    that level."""
    p = t.profiles.c
    conditions = []
    for code, level in languages:
        pl = t.profile_languages.alias()
        conditions.append(
            exists().where(pl.c.record_pk == p.record_pk, pl.c.language_code == code, pl.c.level >= level)
        )
    return conditions


def offers_with_envelopes(conditions: Sequence[Any]) -> Select[Any]:
    """Offers (record pk and current envelope) meeting ``conditions``."""
    o, r = t.offers.c, t.records.c
    return (
        select(o.record_pk, *ENVELOPE_COLUMNS)
        .select_from(t.offers)
        .join(t.records, r.id == o.record_pk)
        .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
        .where(*conditions)
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(value: datetime) -> int:
    """Microseconds since the epoch."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
