"""Faults with real processes: a hub killed mid-publication, a restart under subscribers."""

from __future__ import annotations

import threading

import grpc
import pytest
from spehub.v1 import delivery_pb2, exchange_pb2, offer_pb2

from hub import synth
from hub.domain.records import PayloadKind
from hub.store.engine import Store
from tests.support.hubs import TRUST_DOMAIN, make_participant
from tests.support.processes import HubProcess, hub_env

pytestmark = pytest.mark.processes  # starts hubs as processes of their own

SN, FT = "sn-anpej", "fr-francetravail"


def _env(test_pki, database_url, tmp_path):
    return hub_env(test_pki.root, database_url, f"sqlite:///{tmp_path / 'keys.sqlite3'}", TRUST_DOMAIN)


def _offers(n, start=0):
    now = synth.now_utc()
    out = []
    for i in range(start, start + n):
        offer = next(synth.offers(3, 1, now, start=i))
        offer.header.origin_participant_id = FT
        offer.place.country_code = offer.employer.country_code = "FR"
        offer.target_country_codes[:] = ["SN"]
        out.append(offer)
    return out


def test_sigkill_mid_publication_keeps_every_acknowledged_record_and_retries_duplicate_nothing(
    test_pki, database_url, tmp_path, clock
):

    env = _env(test_pki, database_url, tmp_path)
    hub = HubProcess.start(env, tmp_path / "hub-1.log", tmp_path)
    offers = _offers(400)
    acknowledged: list[str] = []
    ft = make_participant(hub.port, test_pki, FT, clock)
    batches = [offers[i : i + 20] for i in range(0, len(offers), 20)]

    def publish() -> None:
        try:
            requests = (
                exchange_pb2.PublishRequest(
                    request_id=str(i), envelopes=[ft.seal(o, PayloadKind.JOB_OFFER) for o in b]
                )
                for i, b in enumerate(batches)
            )
            for response in ft.exchange.Publish(requests, timeout=60):
                acknowledged.extend(
                    r.record_id for r in response.results if r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED
                )
                if len(acknowledged) >= 100 and hub.proc.poll() is None:
                    hub.kill()  # SIGKILL: no shutdown, no flush, mid-stream
        except grpc.RpcError:
            pass  # the link died with the hub

    worker = threading.Thread(target=publish)
    worker.start()
    worker.join(120)
    assert hub.proc.returncode == -9 and 100 <= len(acknowledged) < len(offers)
    ft.channel.close()

    store = Store(database_url)
    with store.unit_of_work() as uow:
        stored = {e.record_id for e in _all_offers(uow)}
    assert set(acknowledged) <= stored  # every record the hub acknowledged survived the kill

    # The client retries everything on a restarted hub: what was stored comes back DUPLICATE.
    hub = HubProcess.start(env, tmp_path / "hub-2.log", tmp_path)
    try:
        ft = make_participant(hub.port, test_pki, FT, clock)
        outcomes = []
        for b in batches:
            outcomes += ft.publish_one_batch([ft.seal(o, PayloadKind.JOB_OFFER) for o in b])
        ft.channel.close()
        duplicates = {r.record_id for r in outcomes if r.outcome == exchange_pb2.RECORD_OUTCOME_DUPLICATE}
        accepted = {r.record_id for r in outcomes if r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED}
        assert duplicates == stored and accepted | duplicates == {o.header.record_id for o in offers}
        with store.unit_of_work() as uow:
            assert uow.records.count_envelopes() == len(offers)  # each once
    finally:
        assert hub.stop() == 0
        store.close()


def _all_offers(uow):
    from hub.store import schema as t

    rows = uow.conn.execute(
        t.envelopes.select().where(t.envelopes.c.payload_type == PayloadKind.JOB_OFFER.payload_type)
    )
    return list(rows)


def test_subscribers_resume_from_their_cursor_after_a_restart(test_pki, database_url, tmp_path, clock):
    env = _env(test_pki, database_url, tmp_path)
    hub = HubProcess.start(env, tmp_path / "hub-1.log", tmp_path)
    offers = _offers(30)
    ft = make_participant(hub.port, test_pki, FT, clock)
    assert all(
        r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED
        for r in ft.publish_one_batch([ft.seal(o, PayloadKind.JOB_OFFER) for o in offers])
    )
    ft.channel.close()
    sn = make_participant(hub.port, test_pki, SN, clock)
    first = []
    for response in sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30):
        first.append(response.delivery)
        if len(first) == 12:
            break
    sn.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=first[-1].sequence), timeout=10)
    sn.channel.close()
    assert hub.stop() == 0  # a clean restart (SIGTERM)

    hub = HubProcess.start(env, tmp_path / "hub-2.log", tmp_path)
    try:
        sn = make_participant(hub.port, test_pki, SN, clock)
        rest = [
            r.delivery
            for r in sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30)
        ]
        sn.channel.close()
        ids = [
            offer_pb2.JobOffer.FromString(d.envelope.payload).header.record_id
            for d in first + rest
            if d.kind == delivery_pb2.DELIVERY_KIND_RECORD  # the shutdown's audit checkpoint comes too
        ]
        assert sorted(ids) == sorted(o.header.record_id for o in offers)  # nothing lost, nothing twice
        assert rest[0].sequence > first[-1].sequence
    finally:
        assert hub.stop() == 0


def test_database_unreachable_gives_unavailable_no_partial_write_and_recovers(test_pki, clock, tmp_path):
    """PostgreSQL behind a proxy the test cuts: UNAVAILABLE while it is away, service again once it is back."""
    from prometheus_client import CollectorRegistry

    from hub.bootstrap import build_hub
    from tests.support.hubs import hub_settings
    from tests.support.processes import database_behind_proxy

    with database_behind_proxy("fault") as (proxy, database_url):
        hub = build_hub(
            hub_settings(test_pki, database_url), clock=clock, metrics_registry=CollectorRegistry()
        )
        try:
            ft = make_participant(hub.port, test_pki, FT, clock)  # token issued while the database is there
            offers = _offers(30)
            first = ft.publish_one_batch([ft.seal(o, PayloadKind.JOB_OFFER) for o in offers[:10]])
            assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in first)
            proxy.cut()
            try:
                ft.publish_one_batch([ft.seal(o, PayloadKind.JOB_OFFER) for o in offers[10:20]])
                raise AssertionError("a publication went through with the database away")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert "nothing was written" in (exc.details() or "") or "database" in (exc.details() or "")
            proxy.restore()
            results = None
            for _ in range(5):  # the pool drops its dead connections on first use; no restart needed
                try:
                    results = ft.publish_one_batch([ft.seal(o, PayloadKind.JOB_OFFER) for o in offers[10:]])
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert results is not None
            assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in results)
            with hub.store.unit_of_work() as uow:
                assert uow.records.count_envelopes() == 30  # the refused batch left nothing behind
            ft.channel.close()
        finally:
            hub.stop(0)


def test_database_errors_are_named_without_values():
    """What the store says when the database fails: SQLite's text, PostgreSQL's SQLSTATE, never values."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from hub.store.engine import db_reason as _db_reason

    locked = OperationalError(
        "UPDATE x SET y = ?", ("secret",), sqlite3.OperationalError("database is locked")
    )
    assert _db_reason(locked) == "OperationalError: database is locked"

    class UniqueViolation(Exception):
        sqlstate = "23505"

        def __str__(self) -> str:
            return 'duplicate key value violates unique constraint "uq"\nDETAIL: Key (record_id)=(P-secret) exists.'

    conflict = IntegrityError("INSERT …", ("P-secret",), UniqueViolation())
    assert _db_reason(conflict) == "UniqueViolation, SQLSTATE 23505"
    assert "secret" not in _db_reason(conflict) + _db_reason(locked)
