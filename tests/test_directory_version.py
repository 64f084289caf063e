"""The directory's version, read on every call: a change made anywhere applies to the next call,
and the connection it is read on survives the database dropping it."""

from __future__ import annotations

import sqlite3
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spehub.v1 import delivery_pb2, pool_pb2
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.errors import StoreUnavailableError
from hub.pki import DEV_TRUST_DOMAIN
from hub.services.directory import DirectoryAdmin, DirectoryProvider
from hub.store.engine import Store
from tests.support.processes import free_port

SN, ML = "sn-anpej", "ml-anpe"


def _bump(store: Store) -> None:
    with store.unit_of_work(write=True) as uow:
        uow.directory.bump_version()
        uow.commit()


def test_a_suspension_made_through_another_store_applies_on_the_next_call(hub, connect, database_url, clock):
    """Another hub process (or the operator's CLI) suspends a participant in the shared database:
    the running hub refuses that participant's very next call, and serves the others."""
    sn, ml = connect(SN), connect(ML)
    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)  # the directory is cached now
    other = Store(database_url)
    try:
        admin = DirectoryAdmin(other, DirectoryProvider(other, DEV_TRUST_DOMAIN, True), clock)
        admin.set_status(SN, active=False, actor="test")
        with pytest.raises(grpc.RpcError) as err:
            sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ml.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
        admin.set_status(SN, active=True, actor="test")
        sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
    finally:
        other.close()


def test_each_read_sees_the_latest_commit_and_holds_no_snapshot(database_url):
    store, other = Store(database_url), Store(database_url)
    try:
        store.create_schema()
        first = store.directory_version()
        _bump(other)
        assert store.directory_version() == first + 1
        _bump(other)
        assert store.directory_version() == first + 2
        database = make_url(database_url).database
        if store.is_sqlite and database:
            # Between reads, the kept connection holds no read transaction: the log can be
            # truncated (a reader on an older snapshot would make the checkpoint report busy).
            with sqlite3.connect(database, timeout=5) as conn:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0
    finally:
        store.close()
        other.close()


def test_a_dropped_connection_is_replaced_and_the_read_made_again(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (set SPEHUB_TEST_DATABASE_URL): a server that can drop a connection")
    store, admin = Store(database_url), Store(database_url)
    try:
        store.create_schema()
        before = store.directory_version()
        backend = store._version_probe._conn.info.backend_pid
        with admin.engine.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
        _bump(admin)
        assert store.directory_version() == before + 1  # on a new connection, no error
        assert store._version_probe._conn.info.backend_pid != backend
    finally:
        store.close()
        admin.close()


def test_an_unreachable_database_is_unavailable_without_its_address():
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://hub:s3cret-pw@127.0.0.1:{port}/hub?connect_timeout=2"
    store = Store(url)
    try:
        with pytest.raises(StoreUnavailableError) as err:
            store.directory_version()
        message = str(err.value)
        assert "did not answer" in message
        assert "s3cret-pw" not in message and str(port) not in message
    finally:
        store.close()


def test_an_unreachable_database_refuses_calls_with_unavailable(test_pki, clock):
    """The version read failing reaches the caller as UNAVAILABLE (retry), never as a pass."""
    from tests.support.hubs import make_participant, started_hub
    from tests.support.processes import database_behind_proxy

    with (
        database_behind_proxy("probe") as (proxy, database_url),
        started_hub(test_pki, database_url, clock) as hub,
    ):
        try:
            sn = make_participant(hub.port, test_pki, SN, clock)
            sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
            proxy.cut()
            with pytest.raises(grpc.RpcError) as err:
                sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            proxy.restore()
            answered = False
            for _ in range(5):  # dead pooled connections are dropped on first use
                try:
                    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
                    answered = True
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert answered
            sn.channel.close()
        finally:
            proxy.restore()


def test_a_stalled_database_fails_calls_with_unavailable_in_bounded_time_and_recovers(test_pki, clock):
    """The database stops answering without closing anything (the proxy holds every byte): calls
    fail with UNAVAILABLE within a bounded time, those that queued behind the stuck read too,
    instead of hanging until their deadline; once it answers again, calls are served."""
    from concurrent.futures import ThreadPoolExecutor

    from hub.store.engine import VERSION_READ_SECONDS
    from tests.support.hubs import make_participant, started_hub
    from tests.support.processes import database_behind_proxy

    with (
        database_behind_proxy("stall") as (proxy, database_url),
        started_hub(test_pki, database_url, clock) as hub,
    ):
        try:
            sn = make_participant(hub.port, test_pki, SN, clock)
            sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
            proxy.pause()

            def call() -> tuple[grpc.StatusCode, float]:
                start = time.monotonic()
                try:
                    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=60)
                    return grpc.StatusCode.OK, time.monotonic() - start
                except grpc.RpcError as exc:
                    return exc.code(), time.monotonic() - start

            with ThreadPoolExecutor(6) as pool:
                outcomes = list(pool.map(lambda _: call(), range(6)))
                # Still stalled: the next calls connect anew, which is bounded too.
                outcomes += list(pool.map(lambda _: call(), range(3)))
            assert {code for code, _ in outcomes} == {grpc.StatusCode.UNAVAILABLE}, outcomes
            # Each call waits at most for its turn or one read (VERSION_READ_SECONDS), where a stuck
            # read used to hold every call until its deadline; generous for a loaded machine.
            assert max(took for _, took in outcomes) < 4 * VERSION_READ_SECONDS, outcomes

            # A stream is admitted off the event loop: while its admission waits on the stalled
            # database, the loop still answers health checks at once (they waited for it before).
            def subscribe() -> grpc.StatusCode:
                try:
                    next(iter(sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=60)))
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    return exc.code()

            health = health_pb2_grpc.HealthStub(sn.channel)
            with ThreadPoolExecutor(2) as pool:
                streams = [pool.submit(subscribe) for _ in range(2)]
                checks = []
                while not all(f.done() for f in streams):
                    start = time.monotonic()
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
                    checks.append((status, time.monotonic() - start))
                    time.sleep(0.2)
            assert [f.result() for f in streams] == [grpc.StatusCode.UNAVAILABLE] * 2
            assert {status for status, _ in checks} == {health_pb2.HealthCheckResponse.SERVING}
            # Generous against a loaded machine: a check waiting for the loop took VERSION_READ_SECONDS.
            assert max(took for _, took in checks) < VERSION_READ_SECONDS / 2, checks

            proxy.resume()
            deadline = time.monotonic() + 60
            while True:
                code, _ = call()
                if code == grpc.StatusCode.OK:
                    break
                assert code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                time.sleep(0.5)
            sn.channel.close()
        finally:
            proxy.resume()  # before the hub stops: its last checkpoint writes
