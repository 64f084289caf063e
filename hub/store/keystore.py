"""The key store: candidates' data keys, wrapped by the master key, in a database of their own.

Kept apart from the main store on purpose: erasing a candidate deletes their
key here, so that main-database backups taken before the erasure can no
longer be read. Back this store up on its own, with a retention shorter than
the erasure deadline (docs/consent.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from hub.errors import StoreUnavailableError

_metadata = MetaData()
data_keys = Table(
    "data_keys",
    _metadata,
    Column("origin_id", String(64), primary_key=True),
    Column("consent_record_id", String(128), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
)


_WRAPPED = select(data_keys.c.origin_id, data_keys.c.consent_record_id, data_keys.c.wrapped).where(
    data_keys.c.origin_id.in_(bindparam("origins", expanding=True)),
    data_keys.c.consent_record_id.in_(bindparam("ids", expanding=True)),
)


class KeyStore:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(
            url, connect_args={"timeout": 30} if parsed.get_backend_name() == "sqlite" else {}
        )
        try:
            _metadata.create_all(self.engine)
        except DBAPIError as exc:
            raise StoreUnavailableError(f"cannot open the key store ({type(exc.orig).__name__})") from exc

    def wrapped_keys(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        """Wrapped keys for (origin, consent record id) pairs that have one."""
        wanted = set(refs)
        if not wanted:
            return {}
        origins = sorted({o for o, _ in wanted})
        ids = sorted({cid for _, cid in wanted})
        out: dict[tuple[str, str], bytes] = {}
        with self.engine.connect() as conn:
            # One statement, compiled once (expanding parameters), served by the primary key for
            # every origin × id pair: a search page had one query per origin, a third of its time.
            for i in range(0, len(ids), 500):
                for o, cid, wrapped in conn.execute(_WRAPPED, {"origins": origins, "ids": ids[i : i + 500]}):
                    if (o, cid) in wanted:
                        out[(o, cid)] = wrapped
        return out

    def ensure(
        self, refs: Iterable[tuple[str, str]], make: Callable[[str, str], bytes]
    ) -> dict[tuple[str, str], bytes]:
        """Wrapped keys for every pair, creating the missing ones with ``make(origin, consent_id)``."""
        wanted = set(refs)
        found = self.wrapped_keys(wanted)
        missing = wanted - set(found)
        if missing:
            rows = [
                {"origin_id": origin, "consent_record_id": cid, "wrapped": make(origin, cid)}
                for origin, cid in sorted(missing)
            ]
            # One statement for the whole batch; a key created meanwhile by another hub process wins.
            dialect = self.engine.dialect.name
            insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
            with self.engine.begin() as conn:
                if insert is not None:
                    # Both dialects' insert() have it; the union of their types does not say so.
                    conn.execute(insert(data_keys).on_conflict_do_nothing(), rows)  # type: ignore[attr-defined]
                else:
                    for row in rows:
                        try:
                            with conn.begin_nested():
                                conn.execute(data_keys.insert().values(**row))
                        except IntegrityError:
                            continue
            found = self.wrapped_keys(wanted)
        return found

    def destroy(self, origin_id: str, consent_record_id: str) -> bool:
        """Delete a candidate's data key. True if there was one."""
        c = data_keys.c
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    delete(data_keys).where(
                        c.origin_id == origin_id, c.consent_record_id == consent_record_id
                    )
                ).rowcount
            )

    def close(self) -> None:
        self.engine.dispose()
