"""Ten SPEs loading their candidates at once, through a real hub process, while an agency searches:
no stream fails, every record is stored once, and SQLite's write-ahead log stays bounded.

A bounded version of bench/pool_scale.py's load (10 SPEs × 1,000 candidates = 20,000 records,
batches of 200), on SQLite and, with SPEHUB_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from spehub.v1 import exchange_pb2, exchange_pb2_grpc, pool_pb2, pool_pb2_grpc
from sqlalchemy import func, select

from hub import pki, synth
from hub.client import pki_channel, pki_signing_key, seal
from hub.domain.records import PayloadKind
from hub.store import schema as t
from hub.store.engine import Store
from tests.support.hubs import TRUST_DOMAIN
from tests.support.processes import HubProcess, hub_env

PER_SPE = 1000
BATCH = 200
WAL_BOUND = 128 * 1024 * 1024  # 4 × the checkpointer's limit: it truncates soon after, not at once


@pytest.mark.processes
@pytest.mark.slow
def test_ten_spes_loading_at_once_never_fail(database_url, tmp_path: Path):
    root = tmp_path / "pki"  # all ten SPEs active (the session's PKI has one suspended)
    pki.generate_dev_pki(root, trust_domain=TRUST_DOMAIN)
    env = hub_env(
        root,
        database_url,
        f"sqlite:///{tmp_path / 'keys.sqlite3'}",
        TRUST_DOMAIN,
        SPEHUB_MATCH_RANKING_SECONDS="0",
        SPEHUB_MAX_BATCH_RECORDS="1000",
    )
    hub = HubProcess.start(env, tmp_path / "hub.log", tmp_path)
    errors: list[str] = []
    accepted: dict[str, int] = {}
    wal_peak = [0]
    wal = (
        Path(database_url.removeprefix("sqlite:///") + "-wal") if database_url.startswith("sqlite") else None
    )
    loading = threading.Event()
    now = synth.now_utc()

    def publish(code: str) -> None:
        spe = synth.COUNTRIES[code].spe
        key_id, key = pki_signing_key(root, spe)

        def requests():  # type: ignore[no-untyped-def]
            batch = []
            for consent, profile, _ in synth.candidates(7, PER_SPE, now, (code,)):
                batch += [
                    seal(consent, PayloadKind.CONSENT, spe, key_id, key, now),
                    seal(profile, PayloadKind.CANDIDATE_PROFILE, spe, key_id, key, now),
                ]
                if len(batch) >= BATCH:
                    yield exchange_pb2.PublishRequest(request_id=f"{code}", envelopes=batch)
                    batch = []
            if batch:
                yield exchange_pb2.PublishRequest(request_id=f"{code}", envelopes=batch)

        n = 0
        try:
            with pki_channel(f"127.0.0.1:{hub.port}", root, spe) as channel:
                for response in exchange_pb2_grpc.ExchangeServiceStub(channel).Publish(
                    requests(), timeout=600
                ):
                    n += sum(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in response.results)
        except grpc.RpcError as exc:
            errors.append(f"{spe}: {exc.code().name} {exc.details()}")
        accepted[spe] = n

    def search() -> None:
        """An agency searching all along: readers are what keeps a WAL from being reset."""
        with pki_channel(f"127.0.0.1:{hub.port}", root, "fr-francetravail") as channel:
            stub = pool_pb2_grpc.PoolServiceStub(channel)
            while loading.is_set():
                try:
                    stub.SearchProfiles(
                        pool_pb2.SearchProfilesRequest(isco08_codes=["9"], page_size=20), timeout=60
                    )
                except grpc.RpcError as exc:
                    errors.append(f"search: {exc.code().name} {exc.details()}")
                if wal is not None and wal.exists():
                    wal_peak[0] = max(wal_peak[0], wal.stat().st_size)

    def newcomer() -> None:
        """A participant connecting in the middle of the load: its token and first call are
        served, not queued behind the loads' batches."""
        time.sleep(2)
        start = time.monotonic()
        try:
            with pki_channel(f"127.0.0.1:{hub.port}", root, "se-arbetsformedlingen") as channel:
                pool_pb2_grpc.PoolServiceStub(channel).SearchProfiles(
                    pool_pb2.SearchProfilesRequest(isco08_codes=["9"], page_size=1), timeout=10
                )
        except grpc.RpcError as exc:
            errors.append(f"newcomer: {exc.code().name} {exc.details()}")
        newcomer_took.append(time.monotonic() - start)

    newcomer_took: list[float] = []
    try:
        loading.set()
        late = threading.Thread(target=newcomer)
        late.start()
        searcher = threading.Thread(target=search)
        searcher.start()
        threads = [threading.Thread(target=publish, args=(code,)) for code in synth.COUNTRIES]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 600
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic()))
        loading.clear()
        searcher.join(120)
        late.join(60)
        print(f"newcomer's first call took {newcomer_took}")
        assert not any(thread.is_alive() for thread in threads), "a stream did not finish in 10 minutes"
        assert errors == []
        assert accepted == {synth.COUNTRIES[c].spe: 2 * PER_SPE for c in synth.COUNTRIES}
        store = Store(database_url)
        try:
            with store.unit_of_work() as uow:
                stored = uow.conn.execute(select(func.count()).select_from(t.records)).scalar()
            assert stored == 2 * PER_SPE * len(synth.COUNTRIES)
        finally:
            store.close()
        if wal is not None:
            assert wal_peak[0] < WAL_BOUND, f"the write-ahead log grew to {wal_peak[0] / 1e6:.0f} MB"
            print(f"write-ahead log peak {wal_peak[0] / 1e6:.0f} MB")
    finally:
        loading.clear()
        assert hub.stop() == 0, hub.log.read_text()[-2000:]
