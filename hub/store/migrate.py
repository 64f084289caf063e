"""Schema migrations with Alembic: the store's tables are created and changed only through revisions.

``upgrade(engine)`` brings a database to the newest revision (the hub does it
at start; ``spe-hub db upgrade`` does it on demand). On PostgreSQL an advisory
lock makes hub processes that start together migrate one after the other.
``differences(engine)`` compares a database with the tables the code
expects (a test keeps the revisions and hub.store.schema in step).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from hub.store import schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_ID = 727467  # PostgreSQL advisory lock taken while migrating


def _config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision in the code."""
    return str(ScriptDirectory.from_config(_config(None)).get_current_head())


def current(engine: Engine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision``, one process at a time.

    A store created before migrations existed (tables, no revision) has revision
    0001's tables: it is marked as such, then migrated.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_ID})"))
        cfg = _config(conn)
        if MigrationContext.configure(conn).get_current_revision() is None and inspect(conn).has_table(
            "records"
        ):
            command.stamp(cfg, "0001")
        command.upgrade(cfg, revision)


def differences(engine: Engine) -> list[Any]:
    """What differs between the database and hub.store.schema (empty when they agree).

    Alembic compares tables, columns, types and plain indexes; indexes on expressions (the ISCO-08
    group indexes), which it cannot reflect, are checked by name: ``("missing_index", name)``."""
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        found = list(compare_metadata(ctx, schema.metadata))
        reported = {d[1].name for d in found if isinstance(d, tuple) and d[0] == "add_index"}
        existing = inspect(conn)
        for table in schema.metadata.tables.values():
            if not existing.has_table(table.name):
                continue
            names = _index_names(conn, table.name) | reported
            found += [("missing_index", index.name) for index in table.indexes if index.name not in names]
        return found


def _index_names(conn: Connection, table: str) -> set[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
        if conn.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"
    )
    return set(conn.execute(text(query), {"t": table}).scalars())
