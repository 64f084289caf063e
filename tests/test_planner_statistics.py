"""The hub keeps the planner's statistics fresh itself: a table that changed by more than a tenth
since its last analysis is analysed (by the background check, before match rankings, and by
`db upgrade`), on SQLite and on PostgreSQL, without an operator's ANALYZE after a bulk load."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import insert, text

from hub.services.operations import StatisticsKeeper
from hub.store import schema as t
from hub.store.engine import Store
from tests.support.matching import SN, publish_candidates


def _load(store: Store, first: int, n: int) -> None:
    """Bulk-insert ``n`` used token ids (a table with no foreign keys), as a load would."""
    with store.unit_of_work(write=True) as uow:
        uow.conn.execute(
            insert(t.used_token_ids),
            [{"jti": f"j{i}", "expires_at_us": 10**15} for i in range(first, first + n)],
        )
        if not store.is_sqlite:
            # PostgreSQL counts changes per backend and publishes them at most once a second.
            uow.conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        uow.commit()


def _stale(keeper: StatisticsKeeper, expected: bool, deadline: float = 15.0) -> list[str]:
    """The stale tables, waited for until ``used_token_ids`` is (or is not) among them: PostgreSQL's
    change counters reach other sessions shortly after the commit."""
    until = time.monotonic() + deadline
    while True:
        with keeper.store.unit_of_work() as uow:
            stale = uow.maintenance.stale(keeper.share, keeper.minimum, keeper._rows)
        if ("used_token_ids" in stale) == expected or time.monotonic() > until:
            return stale
        time.sleep(0.2)


def _analysed_rows(store: Store) -> float | None:
    """What the planner believes the table holds (None: no statistics); an estimate on SQLite,
    which samples (PRAGMA analysis_limit)."""
    with store.unit_of_work() as uow:
        if store.is_sqlite:
            if (
                uow.conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
                is None
            ):
                return None
            stat = uow.conn.execute(
                text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'used_token_ids' LIMIT 1")
            ).scalar()
            return float(str(stat).split()[0]) if stat else None
        row = uow.conn.execute(
            text(
                "SELECT c.reltuples, s.last_analyze FROM pg_class c JOIN pg_stat_user_tables s"
                " ON s.relid = c.oid WHERE c.relname = 'used_token_ids' AND s.schemaname = current_schema()"
            )
        ).first()
        return float(row[0]) if row is not None and row[1] is not None else None


def _assert_analysed(store: Store, rows: int) -> None:
    believed = _analysed_rows(store)
    assert believed is not None, "no statistics"
    if not store.is_sqlite:  # SQLite samples a few thousand rows: its count is a rough estimate
        assert believed == pytest.approx(rows, rel=0.05)


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.create_schema()
    yield s
    s.close()


def test_a_bulk_load_is_analysed_and_a_small_change_is_not(store):
    keeper = StatisticsKeeper(store, interval=3600, share=0.1, minimum=1000)
    assert keeper.refresh() == []  # an empty store: nothing worth analysing
    _load(store, 0, 5000)
    assert "used_token_ids" in _stale(keeper, expected=True)
    assert _analysed_rows(store) is None

    assert "used_token_ids" in keeper.refresh()
    _assert_analysed(store, 5000)
    assert "used_token_ids" not in _stale(keeper, expected=False)

    # 1,400 more rows: under 1,000 + a tenth of 5,000, so left as it is.
    _load(store, 5000, 1400)
    assert "used_token_ids" not in _stale(keeper, expected=False, deadline=2)
    # 300 more: past it, analysed again.
    _load(store, 6400, 300)
    assert "used_token_ids" in _stale(keeper, expected=True)
    assert "used_token_ids" in keeper.refresh()
    _assert_analysed(store, 6700)


def test_refresh_if_due_waits_for_its_interval(store):
    keeper = StatisticsKeeper(store, interval=3600, share=0.1, minimum=10)
    assert keeper.refresh_if_due() == []  # the first call runs
    _load(store, 0, 100)
    _stale(keeper, expected=True)
    assert keeper.refresh_if_due() == []  # ran a moment ago: not due
    keeper.interval = 0
    assert keeper.refresh_if_due() == ["used_token_ids"]


def test_only_the_hubs_tables_are_analysed(store):
    with store.unit_of_work() as uow, pytest.raises(ValueError, match="not a table of the hub"):
        uow.maintenance.analyze(["sqlite_master; DROP TABLE records"])


@pytest.mark.processes
def test_db_upgrade_analyses_what_a_bulk_load_left(database_url):
    store = Store(database_url)
    store.create_schema()
    try:
        _load(store, 0, 3000)
        _stale(StatisticsKeeper(store), expected=True)
        env = {**os.environ, "SPEHUB_DATABASE_URL": database_url}
        out = subprocess.run(
            [sys.executable, "-m", "hub.entrypoints.cli", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "planner statistics refreshed for 1 table(s)" in out.stdout
        _assert_analysed(store, 3000)
    finally:
        store.close()


def test_records_stored_wake_the_background_check(hub, connect):
    """Publishing past the keeper's minimum wakes the hub's check (no interval waited: it is 30 s),
    which analyses what grew."""
    keeper = hub.statistics
    assert keeper is not None and keeper.analysed == []
    keeper.minimum = 5
    publish_candidates(connect(SN), 4)
    deadline = (
        time.monotonic() + 60
    )  # PostgreSQL: the check waits WAKE_SETTLE_SECONDS (11 s) for the counters
    while "records" not in keeper.analysed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "records" in keeper.analysed
