"""Pool reads on a PostgreSQL streaming replica (SPEHUB_READ_DATABASE_URL), with consent checked on
the primary before every disclosure and the disclosures audited there.

Needs a real replica: `.ci/run` starts one (pg_basebackup and streaming replication, port 5433)
and sets SPEHUB_TEST_READ_DATABASE_URL for the PostgreSQL run. The replica's replay is paused
to make it lag for as long as the test needs: a withdrawal made on the primary still takes effect
before the next disclosure, while the replica still holds the consent as active.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from spehub.v1 import consent_pb2, pool_pb2, profile_pb2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.domain.records import PayloadKind
from tests.support.hubs import make_participant, started_hub
from tests.support.matching import FT, SN, match_candidates, ok, profile_ids, publish_offer
from tests.support.records import demo_consent, demo_profile

READ_URL = os.environ.get("SPEHUB_TEST_READ_DATABASE_URL", "")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not READ_URL or not os.environ.get("SPEHUB_TEST_DATABASE_URL", "").startswith("postgresql"),
        reason="needs a PostgreSQL primary and a streaming replica of it "
        "(SPEHUB_TEST_DATABASE_URL, SPEHUB_TEST_READ_DATABASE_URL; .ci/run starts one)",
    ),
]


def _same_schema(read_url: str, database_url: str) -> str:
    """The replica's URL, reading the test's own schema (the primary's search_path)."""
    options = make_url(database_url).query["options"]
    return make_url(read_url).update_query_dict({"options": options}).render_as_string(hide_password=False)


@pytest.fixture
def replica(database_url) -> Iterator[str]:
    url = _same_schema(READ_URL, database_url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar(), "not a replica"
        yield url
    finally:
        with engine.connect() as conn:  # never leave the replica paused for the next test
            if conn.execute(text("SELECT pg_is_wal_replay_paused()")).scalar():
                conn.execute(text("SELECT pg_wal_replay_resume()"))
        engine.dispose()


def _replay(url: str, paused: bool) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"))
    engine.dispose()


def _candidate(sn, name: str, version: int = 1, status: int = consent_pb2.CONSENT_STATUS_ACTIVE) -> None:
    now = sn.clock()
    consent = demo_consent(SN, f"c-{name}", version, now, recipient_countries=("FR",))
    consent.status = status
    batch = [sn.seal(consent, PayloadKind.CONSENT)]
    if version == 1:
        batch.append(
            sn.seal(
                demo_profile(SN, f"p-{name}", f"c-{name}", 1, now, isco="7112"), PayloadKind.CANDIDATE_PROFILE
            )
        )
    ok(sn.publish_one_batch(batch))


def _search(ft) -> list[str]:
    response = ft.pool.SearchProfiles(
        pool_pb2.SearchProfilesRequest(isco08_codes=["7112"], page_size=50), timeout=30
    )
    return sorted(
        profile_pb2.CandidateProfile.FromString(h.profile.payload).header.record_id for h in response.profiles
    )


def _until(check, deadline: float = 30.0):  # type: ignore[no-untyped-def]
    """Wait for the replica to catch up: ``check()`` until it is true (bounded)."""
    until = time.monotonic() + deadline
    while not (value := check()):
        assert time.monotonic() < until, "the replica did not catch up in time"
        time.sleep(0.1)
    return value


def test_pool_reads_come_from_the_replica_and_a_withdrawal_applies_before_it_replays(
    test_pki, database_url, clock, replica
):
    with started_hub(test_pki, database_url, clock, read_database_url=replica) as hub:
        assert hub.store.has_replica
        sn, ft = (
            make_participant(hub.port, test_pki, SN, clock),
            make_participant(hub.port, test_pki, FT, clock),
        )
        _candidate(sn, "a")
        publish_offer(ft, targets=("SN",))
        _until(lambda: _search(ft) == ["p-a"])
        _until(lambda: profile_ids(match_candidates(ft, "o-mason", page_size=20)) == ["p-a"])

        _replay(replica, paused=True)
        _candidate(sn, "b")  # on the primary only, while the replica is paused
        assert _search(ft) == ["p-a"], "searches read the replica: the new candidate is not there yet"

        # Withdrawn on the primary; the replica still holds the consent as active.
        _candidate(sn, "a", version=2, status=consent_pb2.CONSENT_STATUS_WITHDRAWN)
        assert _search(ft) == []
        assert profile_ids(match_candidates(ft, "o-mason", page_size=20)) == []
        with hub.store.unit_of_work() as uow:  # no disclosure of the withdrawn candidate was audited after
            entries = [e for e in uow.audit.entries() if e.draft.consent_record_id == "c-a"]
        assert entries[-1].draft.action == "consent.withdrawn"

        _replay(replica, paused=False)
        _until(lambda: _search(ft) == ["p-b"])


def test_an_unreachable_replica_leaves_reads_to_the_primary(test_pki, database_url, clock):
    unreachable = _same_schema("postgresql+psycopg://postgres@127.0.0.1:9/test", database_url)
    with started_hub(test_pki, database_url, clock, read_database_url=unreachable) as hub:
        sn, ft = (
            make_participant(hub.port, test_pki, SN, clock),
            make_participant(hub.port, test_pki, FT, clock),
        )
        _candidate(sn, "a")
        assert len(_search(ft)) == 1
