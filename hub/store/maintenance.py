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
            analysed = {**self._sqlite_stat1_rows(), **(analysed_rows or {})}
            return [
                name
                for name in names
                if abs(self._count(name) - analysed.get(name, 0)) > minimum + share * analysed.get(name, 0)
            ]
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

    def _count(self, name: str) -> int:
        table = t.metadata.tables[name]
        return int(self.conn.execute(select(func.count()).select_from(table)).scalar_one())

    def _sqlite_stat1_rows(self) -> dict[str, int]:
        """Each analysed table's row count as sqlite_stat1 has it (an estimate, with PRAGMA
        analysis_limit); none before the first ANALYZE."""
        if self.conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first() is None:
            return {}
        out: dict[str, int] = {}
        for table, stat in self.conn.execute(text("SELECT tbl, stat FROM sqlite_stat1")):
            out.setdefault(table, int(str(stat).split()[0]) if stat else 0)
        return out

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
