"""Planner statistics kept fresh by the hub itself.

A bulk load leaves PostgreSQL's tables without statistics until autovacuum's next analysis (and
with autovacuum off, for ever): a match over 200,000 freshly loaded profiles ran past two
minutes on such a plan. The hub finds the tables that changed by more than a share of their size
since their last analysis and analyses them (hub.services.operations.StatisticsKeeper).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select, text

from hub.store import schema as t
from hub.store.sql import Repository

SQLITE_ANALYSIS_LIMIT = 2000
"""Rows SQLite's ANALYZE reads per index (PRAGMA analysis_limit): an estimate in milliseconds,
where a full analysis of a million-profile store holds the write lock for seconds."""


class TableStatistics(Repository):
    """Which of the hub's tables need new planner statistics, and analysing them."""

    def stale(self, share: float, minimum: int, analysed_rows: Mapping[str, int] | None = None) -> list[str]:
        """Tables with more than ``minimum + share × rows`` rows changed since their last analysis
        (or never analysed and holding more than ``minimum`` rows), by name.

        SQLite keeps no change counters: its tables' sizes are compared with their size when last
        analysed, ``analysed_rows`` (what ``analyze`` returned) or else the estimate in sqlite_stat1."""
        names = sorted(t.metadata.tables)
        if self.is_sqlite:
            known = analysed_rows or {}
            return [name for name in names if self._sqlite_stale(name, share, minimum, known.get(name))]
        rows = self.conn.execute(
            text(
                "SELECT s.relname, s.n_mod_since_analyze, c.reltuples,"
                " s.last_analyze IS NULL AND s.last_autoanalyze IS NULL"
                " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.schemaname = current_schema()"
            )
        )
        out = []
        for name, changed, tuples, never in rows:
            if name not in t.metadata.tables:
                continue
            size = max(float(tuples), 0.0)  # -1: never vacuumed nor analysed
            if (never and changed > minimum) or changed > minimum + share * size:
                out.append(name)
        return sorted(out)

    def _sqlite_stale(self, name: str, share: float, minimum: int, analysed: int | None) -> bool:
        rows = self._count(name)
        if analysed is None:
            stat = None
            if self._has_sqlite_stat1():
                stat = self.conn.execute(
                    text("SELECT stat FROM sqlite_stat1 WHERE tbl = :name LIMIT 1"), {"name": name}
                ).scalar()
            # With PRAGMA analysis_limit, sqlite_stat1's row count is an estimate.
            analysed = int(str(stat).split()[0]) if stat else 0
        return abs(rows - analysed) > minimum + share * analysed

    def _count(self, name: str) -> int:
        table = t.metadata.tables[name]
        return int(self.conn.execute(select(func.count()).select_from(table)).scalar_one())

    def _has_sqlite_stat1(self) -> bool:
        return (
            self.conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
            is not None
        )

    def analyze(self, names: list[str]) -> dict[str, int]:
        """Gather planner statistics for these tables (names from ``stale``). On SQLite, returns
        each table's exact row count as analysed (for ``stale``'s ``analysed_rows``)."""
        preparer = self.conn.dialect.identifier_preparer
        unknown = [name for name in names if name not in t.metadata.tables]
        if unknown:
            raise ValueError(f"not a table of the hub: {unknown[0]!r}")
        if self.is_sqlite and names:
            self.conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
        for name in names:
            self.conn.exec_driver_sql(f"ANALYZE {preparer.quote(name)}")
        return {name: self._count(name) for name in names} if self.is_sqlite else {}
