"""Which hub process does the work that one process should do for all: a PostgreSQL advisory lock.

Several hub processes share one PostgreSQL database (``SPEHUB_PROCESSES``, or several machines).
Work whose result is the same in every process, such as counting the pool for the metrics, is
done by the one process that holds a session advisory lock, on a connection kept for it: when
that process ends or loses its connection, PostgreSQL releases the lock and the next process to
ask takes it over. SQLite is one process's store: that process always leads.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from hub.errors import StoreUnavailableError
from hub.store.sql import METRICS_LOCK


class Leadership:
    """Whether this process holds ``lock`` (PostgreSQL), asked anew at each ``held()``.

    The lock is taken per schema (its second key is the hash of the connection's current schema),
    so that hubs on separate schemas of one database (the tests') do not elect one leader for all.
    Thread-safe; ``close`` gives the lock up."""

    def __init__(self, engine: Engine, lock: int = METRICS_LOCK) -> None:
        self.engine = engine
        self.lock = lock
        self._mutex = threading.Lock()
        self._conn: Any = None  # the DBAPI connection, detached from the pool
        self._held = False
        self._closed = False

    def held(self) -> bool:
        """True if this process leads: it held the lock already and its connection still answers,
        or it took the lock now. False if another process holds it. Raises StoreUnavailableError
        when the database does not answer (the lock, if this process held it, is then given up).

        A connection that fails (the database restarted, or ended an idle session) is replaced once
        at once, as hub.store.engine's version probe does: the lock is free again then."""
        if self.engine.dialect.name != "postgresql":
            return True
        failures = (self.engine.dialect.loaded_dbapi.Error, DBAPIError)
        with self._mutex:
            if self._closed:  # the hub stops: a computation still under way does not lead again
                return False
            try:
                return self._ask()
            except failures:
                self._drop()
            try:
                return self._ask()
            except failures as exc:
                self._drop()
                orig = exc.orig if isinstance(exc, DBAPIError) else exc
                raise StoreUnavailableError(f"the database did not answer ({type(orig).__name__})") from exc

    def _ask(self) -> bool:
        if self._conn is None:
            self._conn = self._connect()
        with self._conn.cursor() as cursor:
            if self._held:
                # A session lock lasts as long as its connection: one that answers still holds it.
                cursor.execute("SELECT 1")
            else:
                cursor.execute(
                    f"SELECT pg_try_advisory_lock({int(self.lock)}, hashtext(coalesce(current_schema(), '')))"
                )
                self._held = bool(cursor.fetchone()[0])
        return self._held

    def _connect(self) -> Any:
        pooled = self.engine.raw_connection()
        pooled.detach()  # kept for the lock: never handed to a unit of work
        conn: Any = pooled.dbapi_connection
        conn.autocommit = True  # holds the session lock, never a transaction
        return conn

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Give the lock up (closing its connection releases it), for good."""
        with self._mutex:
            self._closed = True
            self._drop()
