"""Lookups by key search their unique index on every key column, whatever the store's size.

Two such lookups regressed unseen, each a scan that grew with the store: publication's version
check named no payload type (a parallel scan of every envelope of the origin per batch on
PostgreSQL past 500,000 records), and the consent re-check of a disclosure as a row-value IN (a
scan of the whole consent index on SQLite: 170 ms a search at a million candidates). SQLite
plans these the same at any size, so the plans are read there; PostgreSQL, which scans small
tables whatever the indexes, is shown by bench/pool_scale.py and BENCHMARKS.md.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from hub.clock import to_us
from hub.domain.records import PayloadKind
from hub.domain.stored import Audience
from hub.services.matching import MATCHING_BIT
from tests.support.matching import FT, SN, publish_candidates


def _plans(store, work) -> list[tuple[str, list[str]]]:
    """(statement, its SQLite query plan) of every SELECT ``work(uow)`` runs."""
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        with store.unit_of_work() as uow:
            work(uow)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        return [
            (sql, [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()])
            for sql, params in seen
        ]


@pytest.fixture
def published(hub, connect):
    if not hub.store.is_sqlite:
        pytest.skip("reads SQLite's query plans; PostgreSQL's are shown by bench/pool_scale.py")
    publish_candidates(connect(SN), 3)


def test_the_version_check_of_a_publication_searches_the_unique_indexes(hub, published):
    keys = [(PayloadKind.CANDIDATE_PROFILE.payload_type, f"p-{i}") for i in range(3)]
    plans = _plans(hub.store, lambda uow: uow.records.versions_of(SN, keys))
    assert len(plans) == 2
    for sql, plan in plans:
        assert any("(origin_id=? AND payload_type=? AND record_id=?)" in step for step in plan), (sql, plan)
        assert not any(step.startswith("SCAN") for step in plan), (sql, plan)


def test_the_consent_recheck_of_a_disclosure_searches_the_unique_index(hub, published, clock):
    subjects = {(SN, f"c-{i}") for i in range(3)}
    audience = Audience(FT, "FR", MATCHING_BIT, 1, to_us(clock()))
    found: list[set[tuple[str, str]]] = []
    plans = _plans(hub.store, lambda uow: found.append(uow.consents.allowed(subjects, audience, named=True)))
    assert found == [subjects]  # demo consents name France
    ((sql, plan),) = plans
    assert any(
        step.startswith("SEARCH consents") and "origin_id=? AND record_id=?" in step for step in plan
    ), (
        sql,
        plan,
    )
    assert not any(step.startswith("SCAN consents") for step in plan), (sql, plan)
