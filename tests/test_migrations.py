"""Migrations: the migrated schema is the code's, and a populated store of the previous revision upgrades."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry
from spehub.v1 import pool_pb2
from sqlalchemy import MetaData, Table, create_engine, func, insert, select, text

from hub.bootstrap import build_hub
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.store import migrate
from hub.store import schema as t
from tests.support.hubs import hub_settings, make_participant
from tests.support.records import demo_consent, demo_offer, demo_profile

SN, FT = "sn-anpej", "fr-francetravail"
# Tables of revision 0001 (everything the first release stored).
REVISION_1_TABLES = [
    name
    for name in t.metadata.tables
    if name not in {"profile_skills", "profile_experience", "mobility_cycles", "mobility_events"}
]


def test_the_migrated_schema_is_the_codes(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert migrate.differences(engine) == []
    # Alembic cannot compare indexes on expressions: they are checked by name, and a missing one shows.
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_profile_occupations_group2"))
    (difference,) = migrate.differences(engine)
    assert difference[0] in ("add_index", "missing_index")  # PostgreSQL's is Alembic's own
    assert getattr(difference[1], "name", difference[1]) == "ix_profile_occupations_group2"
    engine.dispose()


def test_a_store_made_before_migrations_is_adopted(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:  # as create_all left it: the tables, no revision
        conn.execute(text("DROP TABLE alembic_version"))
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head() and migrate.differences(engine) == []
    engine.dispose()


# The copy reads rows only; SQLAlchemy cannot reflect the expression indexes of revision 0003.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_a_populated_store_of_the_previous_revision_upgrades(test_pki, database_url, tmp_path, clock):
    # Records published by a hub, on a database of its own...
    source_url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    keys = f"sqlite:///{tmp_path / 'keys.sqlite3'}"  # the key store is kept apart and survives the upgrade
    hub = build_hub(
        hub_settings(test_pki, source_url, keystore_url=keys),
        clock=clock,
        metrics_registry=CollectorRegistry(),
    )
    try:
        sn = make_participant(hub.port, test_pki, SN, clock)
        ft = make_participant(hub.port, test_pki, FT, clock)
        now = clock()
        sn.publish_one_batch(
            [
                sn.seal(demo_consent(SN, "c-1", 1, now, recipient_countries=("FR",)), PayloadKind.CONSENT),
                sn.seal(demo_profile(SN, "p-1", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE),
            ]
        )
        ft.publish_one_batch([ft.seal(demo_offer(FT, "o-1", 1, now), PayloadKind.JOB_OFFER)])
        assert len(ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10).profiles) == 1
        sn.channel.close()
        ft.channel.close()
    finally:
        hub.stop(0)
    # ... copied into a store at revision 0001, as the first release would have left it.
    target = create_engine(database_url)
    migrate.upgrade(target, "0001")
    source = create_engine(source_url)
    old = MetaData()
    copied = 0
    with source.connect() as src, target.begin() as dst:
        for name in [tb.name for tb in t.metadata.sorted_tables if tb.name in REVISION_1_TABLES]:
            table = Table(name, old, autoload_with=src)
            rows = [dict(r._mapping) for r in src.execute(select(table))]
            if rows:
                dst.execute(insert(Table(name, MetaData(), autoload_with=dst)), rows)
                copied += len(rows)
    assert copied > 20
    if target.dialect.name == "postgresql":  # identity sequences follow the copied ids
        with target.begin() as conn:
            for table, column in (("envelopes", "id"), ("records", "id"), ("deliveries", "seq")):
                sequence = conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
                ).scalar()
                top = conn.execute(select(func.max(t.metadata.tables[table].c[column]))).scalar()
                conn.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": top})
    source.dispose()
    # The hub migrates it at start and serves what was there.
    hub = build_hub(
        hub_settings(test_pki, database_url, keystore_url=keys),
        clock=clock,
        metrics_registry=CollectorRegistry(),
    )
    try:
        assert (
            migrate.current(hub.store.engine) == migrate.head()
            and migrate.differences(hub.store.engine) == []
        )
        # Revision 0005 copied each profile's own match constraints beside its occupations.
        with hub.store.engine.connect() as conn:
            po, p, pd = t.profile_occupations.c, t.profiles.c, t.profile_destinations.c
            beside = conn.execute(select(po.mobility_mask, po.available_from, po.destinations)).all()
            profile = conn.execute(select(p.mobility_mask, p.available_from)).one()
            wanted = sorted(conn.execute(select(pd.country_code)).scalars())
        assert (
            wanted
            and beside
            and all((m, a) == tuple(profile) and sorted(d.split(",")) == wanted for m, a, d in beside)
        ), (beside, profile, wanted)
        ft = make_participant(hub.port, test_pki, FT, clock)
        assert len(ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10).profiles) == 1
        # Matching works on the upgraded store (no skills or experience until the profile is republished).
        matches = ft.pool.MatchCandidates(pool_pb2.MatchCandidatesRequest(offer_record_id="o-1"), timeout=10)
        assert len(matches.candidates) == 1 and matches.candidates[0].match.experience_months == 0
        ft.channel.close()
        count, problems = hub.audit.verify()
        assert count > 0 and problems == []
    finally:
        hub.stop(0)
    target.dispose()


def test_db_commands(database_url, test_pki, monkeypatch, capsys):
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    assert main(["db", "current"]) == 1
    assert "none" in capsys.readouterr().out
    assert main(["db", "upgrade", "0001"]) == 0
    assert main(["db", "check"]) == 1
    assert "run `spe-hub db upgrade`" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"schema at revision {migrate.head()} (was 0001)" in capsys.readouterr().out
    assert main(["db", "current"]) == 0 and main(["db", "check"]) == 0


def _in_database_file(path, tmp_path) -> int:
    """Participants written into the SQLite database file itself (a copy without its WAL)."""
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(path.read_bytes())
    engine = create_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.participants)).scalar_one())
    finally:
        engine.dispose()
        copy.unlink()


def test_sqlite_checkpoints_happen_beside_the_transactions(tmp_path):
    """A transaction never copies the WAL into the database (that took 100 ms at a million profiles);
    a thread of the store does, every few tenths of a second and when the store closes."""
    from hub.store.engine import Store

    path = tmp_path / "hub.sqlite3"
    row = {
        "id": "sn-anpej",
        "country_code": "SN",
        "kind": "origin_spe",
        "display_name": "x",
        "status": "active",
    }
    created = Store(f"sqlite:///{path}")
    created.create_schema()
    created.close()
    slow = Store(f"sqlite:///{path}", checkpoint_seconds=3600)
    with slow.unit_of_work(write=True) as uow:
        assert uow.conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        uow.conn.execute(insert(t.participants).values(**row))
        uow.commit()
    assert _in_database_file(path, tmp_path) == 0  # only in the WAL: no transaction checkpointed
    slow.close()
    assert _in_database_file(path, tmp_path) == 1  # the last checkpoint, when the store closed

    fast = Store(f"sqlite:///{path}", checkpoint_seconds=0.1)
    try:
        with fast.unit_of_work(write=True) as uow:
            uow.conn.execute(insert(t.participants).values(**{**row, "id": "ml-anpe"}))
            uow.commit()
        deadline = time.monotonic() + 10
        while _in_database_file(path, tmp_path) != 2:
            assert time.monotonic() < deadline, "the WAL was not checkpointed within 10 s"
            time.sleep(0.1)
    finally:
        fast.close()
