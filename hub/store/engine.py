"""The engine: one Store per process, its connections, and the unit of work each transaction gets.

SQLite (default) runs in WAL mode with 16 KiB pages; write transactions take
the write lock up front (BEGIN IMMEDIATE) so that two writers never deadlock on
a lock upgrade. PostgreSQL is reached through psycopg 3. Database errors leave
this module as StoreUnavailableError; a unit of work rolls back unless
committed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from hub.errors import StoreConflictError, StoreUnavailableError
from hub.store import migrate
from hub.store.uow import UnitOfWork

log = logging.getLogger("spehub")

WAL_LIMIT_BYTES = 32 * 1024 * 1024
"""Past this size, SQLite's write-ahead log is copied into the database and truncated, with the
hub's writers held for that moment (_Checkpointer)."""


class Store:
    """The hub's database. Create one per process (hub.bootstrap); it is thread-safe."""

    def __init__(self, url: str, checkpoint_seconds: float = 0.5, read_url: str = "") -> None:
        self.url = url
        self._dialect = make_url(url).get_backend_name()
        self.engine = _make_engine(url, self._dialect)
        # A streaming replica for the pool's reads (unit_of_work(replica=True)); none: the primary.
        self.read_engine = _make_engine(read_url, make_url(read_url).get_backend_name()) if read_url else None
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in steps of up
        # to 100 ms before trying again: under several publishers the lock sat free while they slept,
        # and one could lose the race until the busy timeout. Writers of this process queue here
        # instead, and take the lock the moment the previous one commits.
        self._writers = threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        database = make_url(url).database if self.is_sqlite else None
        self._checkpoints = (
            _Checkpointer(database, checkpoint_seconds, self._writers)
            if database and database != ":memory:"
            else None
        )
        self._version_probe = _VersionProbe(self.engine)

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

    @property
    def has_replica(self) -> bool:
        return self.read_engine is not None

    def directory_version(self) -> int:
        """The directory's change counter (hub.store.directory), as committed now.

        Read on every call (hub.services.directory), so in one round trip on a connection kept for
        it, outside any transaction. Raises StoreUnavailableError."""
        return self._version_probe.read()

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self._version_probe.close()
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()

    @contextmanager
    def unit_of_work(self, write: bool = False, replica: bool = False) -> Iterator[UnitOfWork]:
        """A transaction; rolled back unless ``commit()`` was called.

        ``replica``: a read-only transaction on the read replica when there is one (its data may lag
        the primary by the replication delay); on the primary when there is none, or when the replica
        cannot be reached (logged), so that reads do not fail with it.

        Raises StoreUnavailableError when the database fails; nothing is
        written then.
        """
        try:
            with (
                self._writers if write else contextlib.nullcontext(),
                self._replica_connection() if replica and not write else self.engine.connect() as conn,
            ):
                if write:
                    conn = conn.execution_options(spehub_write=True)
                with conn.begin() as tx:
                    uow = UnitOfWork(conn, self.is_sqlite)
                    yield uow
                    if uow.committed:
                        tx.commit()
                    else:
                        tx.rollback()
            if write and self._checkpoints is not None:
                self._checkpoints.written()
        except IntegrityError as exc:
            raise StoreConflictError(
                "another hub process wrote the same record at the same moment; nothing was written"
            ) from exc
        except DBAPIError as exc:
            raise StoreUnavailableError(
                f"the database did not complete the transaction ({db_reason(exc)}); nothing was written"
            ) from exc

    def _replica_connection(self) -> Connection:
        """A connection to the read replica, or to the primary when there is none or it cannot be
        reached (a warning, with no URL in it: it may hold a password)."""
        if self.read_engine is None:
            return self.engine.connect()
        try:
            return self.read_engine.connect()
        except DBAPIError as exc:
            log.warning("the read replica is unreachable (%s): reading from the primary", db_reason(exc))
            return self.engine.connect()


VERSION_READ_SECONDS = 5.0
"""How long one read of the directory's version may take, connecting included, and how long a call
waits for another call's read (they take turns): past it, the call fails with UNAVAILABLE. The query
itself takes 0.05 ms on loopback PostgreSQL."""

POSTGRESQL_CONNECT_ARGS = {
    # A connection attempt to a database that does not answer ends (libpq waits forever by default).
    "connect_timeout": 10,
    # A peer that vanished without a reset (a host down, a firewall's dropped state) is noticed on
    # an idle connection within 30 + 3 x 10 s, rather than the kernel's two hours...
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    # ...and data sent that stays unacknowledged for 30 s ends the connection (TCP_USER_TIMEOUT).
    "tcp_user_timeout": 30_000,
}
"""libpq's defaults for every connection of the hub; the database URL's query overrides each."""


class _VersionProbe:
    """Reads the directory's version on a database connection of its own, in autocommit mode: one
    round trip per call, where a unit of work from the pool took four (its pre-ping, BEGIN, the
    query and the rollback: 0.8 ms against 0.05 ms on loopback PostgreSQL).

    Each read sees what is committed at that moment, as a new transaction would. The connection is
    made on first use (SQLite: taken out of the pool, never to go back in autocommit mode;
    PostgreSQL: opened for it, with the pool's connection settings); when a read fails
    (a database restart, an idle timeout), the connection is closed and the read made once more on
    a new one, since a read changes nothing. Calls on several threads take turns (one round trip
    each).

    Every call reads here, so a read must not hang: on PostgreSQL a read that has not answered
    within VERSION_READ_SECONDS (a stalled network, a database that stopped answering) is ended by
    a watchdog thread, which shuts the connection's socket down, and fails; so does a call that
    waited that long for its turn; the database's own statement_timeout ends a read stuck inside
    it. The next read after a failure connects anew."""

    QUERY = "SELECT version FROM directory_state WHERE id = 1"

    def __init__(self, engine: Engine, timeout: float = VERSION_READ_SECONDS) -> None:
        self.engine = engine
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None  # the DBAPI connection, detached from the pool
        # (deadline, connection, its socket's inode) of a read under way
        self._watched: tuple[float, Any, int] | None = None
        self._inode = 0
        self._timed_out = False
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    def read(self) -> int:
        failures = (self.engine.dialect.loaded_dbapi.Error, DBAPIError)
        if not self._lock.acquire(timeout=self.timeout):
            raise StoreUnavailableError(f"the database did not answer within {self.timeout:g} s")
        try:
            try:
                return self._read()
            except failures as exc:
                self._drop()  # dropped by the database, or broken: once more on a new connection
                if self._timed_out:
                    raise self._unavailable(exc) from exc
            try:
                return self._read()
            except failures as exc:
                self._drop()
                raise self._unavailable(exc) from exc
        finally:
            self._lock.release()

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        if self._timed_out:
            return StoreUnavailableError(f"the database did not answer within {self.timeout:g} s")
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        return StoreUnavailableError(f"the database did not answer ({type(orig).__name__})")

    def _read(self) -> int:
        self._timed_out = False
        if self._conn is None:
            self._conn = self._connect()
        if self._watchdog is not None:
            self._watched = (time.monotonic() + self.timeout, self._conn, self._inode)
        try:
            cursor = self._conn.cursor()
            try:
                cursor.execute(self.QUERY)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            self._watched = None
        return int(row[0]) if row else 0

    def _connect(self) -> Any:
        if self.engine.dialect.name != "postgresql":
            pooled = self.engine.raw_connection()  # DBAPIError when the database is away
            pooled.detach()  # closed for good when dropped, never handed to a unit of work
            # SQLite: the connection already runs without pysqlite's implicit transactions
            # (_sqlite_connect), so a lone SELECT reads the latest commit and holds nothing after it.
            return pooled.dbapi_connection
        # PostgreSQL: a connection of its own rather than one from the pool, whose checkout could
        # wait for a free connection or hang in the pre-ping of a stalled one. Connecting is bounded
        # by connect_timeout, the server ends a stuck query (statement_timeout, set as the session
        # starts: no round trip), and the watchdog ends a read the network holds.
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        options = " ".join(
            o
            for o in (str(cparams.get("options", "")), f"-c statement_timeout={int(self.timeout * 1000)}")
            if o
        )
        params = {
            **POSTGRESQL_CONNECT_ARGS,
            "connect_timeout": max(2, math.ceil(self.timeout)),  # libpq's smallest is 2 s
            **cparams,
            "options": options,
        }
        conn: Any = self.engine.dialect.connect(*cargs, **params)
        conn.autocommit = True
        self._inode = os.fstat(conn.pgconn.socket).st_ino
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="version-read-watchdog", daemon=True)
            self._watchdog.start()
        return conn

    def _watch(self) -> None:
        """End a read that passed its deadline: shutting the socket down wakes the thread waiting
        on it with an error (closing the connection from here would race with that thread). The
        socket is checked to be the read's own (its inode) before it is shut down: the descriptor
        number may have been closed and given to another since."""
        while not self._closed.wait(min(1.0, self.timeout / 4)):
            watched = self._watched
            if watched is None or time.monotonic() < watched[0]:
                continue
            self._timed_out = True
            with (
                contextlib.suppress(Exception),
                socket.socket(fileno=os.dup(watched[1].pgconn.socket)) as sock,
            ):
                if os.fstat(sock.fileno()).st_ino == watched[2]:
                    sock.shutdown(socket.SHUT_RDWR)
            log.warning("the directory's version was not read within %g s: connection ended", self.timeout)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._drop()


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
    given = make_url(url).query
    engine = create_engine(
        url,
        pool_size=20,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={k: v for k, v in POSTGRESQL_CONNECT_ARGS.items() if k not in given},
    )

    @event.listens_for(engine, "connect")
    def _postgresql_connect(dbapi_conn: Any, _record: Any) -> None:
        # No JIT: its compilation cost 340 ms of a 1 s match over a million profiles, for queries
        # that read a few thousand rows by index (PostgreSQL turns it on for any plan whose
        # estimated cost passes jit_above_cost, which a match's does).
        with dbapi_conn.cursor() as cur:
            cur.execute("SET jit = off")
        dbapi_conn.commit()

    return engine


class _Checkpointer:
    """Copies a SQLite database's write-ahead log into the database file every ``interval`` seconds,
    on a connection and thread of its own (PASSIVE: it never waits for, nor blocks, readers and
    writers), and once more when stopped.

    Under a steady stream of writers a PASSIVE checkpoint never catches the log up between two
    commits, so SQLite never starts the log over and it grows without end: 315 MB for 30,000
    records loaded by ten SPEs at once, 2.7 GB for 400,000 (tests/test_load_at_once.py). Once the
    log passes WAL_LIMIT_BYTES, the checkpointer takes the store's writer lock (the hub's writers
    queue on it meanwhile), copies the whole log and truncates it (TRUNCATE: it waits for readers
    still on an older snapshot, up to the busy timeout)."""

    def __init__(self, database: str, interval: float, writers: Any) -> None:
        self.database = database
        self.interval = interval
        self.writers = writers
        self.wal = Path(database + "-wal")
        self.truncations = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """A write committed: wake the checkpointer at once if the log has grown past its limit."""
        try:
            if self.wal.stat().st_size > WAL_LIMIT_BYTES:
                self._wake.set()
        except OSError:
            pass

    def _run(self) -> None:
        conn = None
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                stopping = self._stop.is_set()
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.database, timeout=30, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if self.wal.exists() and self.wal.stat().st_size > WAL_LIMIT_BYTES:
                        with self.writers:
                            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                        if busy:
                            log.warning("SQLite log not truncated: a reader held it past the busy timeout")
                        else:
                            self.truncations += 1
                except sqlite3.Error as exc:  # the next round tries again; the WAL keeps everything
                    log.warning("SQLite checkpoint failed: %s", type(exc).__name__)
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(60)


def db_reason(exc: DBAPIError) -> str:
    """What the database said, without values: SQLite's error text (it quotes none), or
    PostgreSQL's SQLSTATE (its messages can quote key values, so they stay out)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return f"{type(orig).__name__}, SQLSTATE {sqlstate}"
    if type(orig).__module__.startswith("sqlite3"):
        return f"{type(orig).__name__}: {str(orig)[:80]}"
    return type(orig).__name__
