"""Corridor statistics: only under consents that allow them, small cells suppressed, as table, CSV and metrics."""

from __future__ import annotations

import csv
import io
import urllib.request

from spehub.v1 import common_pb2, consent_pb2, exchange_pb2, mobility_pb2

from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.services.statistics import Corridor, cells, corridor_counts
from tests.support.records import demo_consent, demo_offer, demo_profile

SN, FT = "sn-anpej", "fr-francetravail"
STATS = (consent_pb2.PURPOSE_POOL_SEARCH, consent_pb2.PURPOSE_MATCHING, consent_pb2.PURPOSE_STATISTICS)


def _ok(results):
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in results), [
        (r.field, r.message) for r in results
    ]


def _candidates(sn, prefix, n, destination, purposes=STATS):
    now = sn.clock()
    for i in range(n):
        name = f"{prefix}-{i}"
        consent = demo_consent(SN, f"c-{name}", 1, now, recipient_countries=("FR", "ES"))
        del consent.purposes[:]
        for purpose in purposes:
            consent.purposes.add(purpose=purpose, notice_version="2026-01", notice_language_code="fr")
        profile = demo_profile(SN, f"p-{name}", f"c-{name}", 1, now)
        profile.desired_country_codes[:] = [destination]
        profile.mobility_types[:] = [common_pb2.MOBILITY_TYPE_SEASONAL]
        _ok(
            sn.publish_one_batch(
                [sn.seal(consent, PayloadKind.CONSENT), sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
            )
        )


def _event(p, n, kind, app, **kw):
    now = p.clock()
    event = mobility_pb2.MobilityEvent(
        application_origin_participant_id=SN,
        application_id=app,
        type=kind,
        occurred_on=common_pb2.Date(year=now.year, month=now.month, day=now.day),
        **kw,
    )
    event.header.record_id, event.header.origin_participant_id, event.header.version = (
        f"ev-{app}-{n}",
        p.id,
        1,
    )
    _ok(p.publish_one_batch([p.seal(event, PayloadKind.MOBILITY_EVENT)]))


def _corridor_data(connect):
    sn, ft = connect(SN), connect(FT)
    _candidates(sn, "fr", 5, "FR")  # exactly the threshold: shown
    _candidates(sn, "es", 4, "ES")  # one under: suppressed
    _candidates(sn, "quiet", 3, "FR", purposes=STATS[:2])  # no statistics purpose: never counted
    _ok(
        ft.publish_one_batch(
            [ft.seal(demo_offer(FT, "o-1", 1, ft.clock(), targets=("SN",)), PayloadKind.JOB_OFFER)]
        )
    )
    for i in range(5):
        _event(
            sn,
            1,
            mobility_pb2.MOBILITY_EVENT_TYPE_APPLICATION,
            f"app-{i}",
            profile_record_id=f"p-fr-{i}",
            offer_origin_participant_id=FT,
            offer_record_id="o-1",
        )
    for i in range(4):
        _event(ft, 2, mobility_pb2.MOBILITY_EVENT_TYPE_SELECTION, f"app-{i}")
    return sn, ft


def _key(kind, destination="FR", mobility="seasonal", origin="SN"):
    return Corridor(kind, origin, destination, mobility, "9", "")


def test_counts_follow_consent_and_small_cells_are_suppressed(hub, connect, clock):
    _corridor_data(connect)
    table = {c.corridor: c for c in cells(corridor_counts(hub.store, clock), by_month=False)}
    assert (
        table[_key("profiles")].count == 5 and not table[_key("profiles")].suppressed
    )  # the 3 quiet ones left out
    assert table[_key("profiles", "ES")].count == 4 and table[_key("profiles", "ES")].shown == "<5"
    assert table[_key("applications")].shown == "5"
    assert table[_key("selections")].shown == "<5"
    assert table[_key("offers")].shown == "<5"  # offers count without consent; one offer here
    months = cells(corridor_counts(hub.store, clock))
    assert {c.corridor.month for c in months} == {clock().strftime("%Y-%m")}


def test_withdrawing_the_statistics_purpose_takes_the_candidate_out(hub, connect, clock):
    sn, _ = _corridor_data(connect)
    narrowed = demo_consent(SN, "c-fr-0", 2, sn.clock(), recipient_countries=("FR", "ES"))  # no statistics
    _ok(sn.publish_one_batch([sn.seal(narrowed, PayloadKind.CONSENT)]))
    table = {c.corridor: c for c in cells(corridor_counts(hub.store, clock), by_month=False)}
    assert table[_key("profiles")].shown == "<5"
    assert table[_key("applications")].shown == "<5"  # its application no longer counts either


def test_metrics_export_only_the_cells_that_are_not_suppressed(hub, connect):
    _corridor_data(connect)
    hub.gauges.refresh()
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    shown = [line for line in body.splitlines() if line.startswith("spehub_corridor_records{")]
    assert any(
        'kind="profiles"' in line and 'destination_country="FR"' in line and line.endswith(" 5.0")
        for line in shown
    )
    assert any('kind="applications"' in line for line in shown)
    assert not any('destination_country="ES"' in line or 'kind="selections"' in line for line in shown)
    # Labels are corridors and kinds only: no record ids, no persons.
    assert not any("p-fr" in line or "c-fr" in line for line in shown)


def test_stats_command_table_and_csv(hub, connect, test_pki, database_url, monkeypatch, capsys):
    _corridor_data(connect)
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    assert main(["stats", "--all-months"]) == 0
    out = capsys.readouterr().out
    assert "profiles" in out and "SN→FR" in out and "<5" in out
    assert main(["stats", "--csv", "--kind", "profiles"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["destination"], r["count"]) for r in rows} == {("FR", "5"), ("ES", "<5")}
    assert all(r["kind"] == "profiles" and len(r["month"]) == 7 for r in rows)


def _pool_gauge(hub) -> dict[str, float]:
    hub.gauges.refresh()
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("spehub_pool_profiles{"):
            out[line.split('origin_country="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def test_the_pool_size_metric_follows_consent_and_the_small_cell_rule(hub, connect):
    """spehub_pool_profiles counted every live profile and showed cells under 5: it now counts
    what the corridor statistics count, under the same rules."""
    sn = connect(SN)
    _candidates(sn, "quiet", 6, "FR", purposes=STATS[:2])  # no statistics purpose: never counted
    assert _pool_gauge(hub) == {}
    _candidates(sn, "few", 4, "FR")  # counted, but under the threshold: left out
    assert _pool_gauge(hub) == {}
    _candidates(sn, "one-more", 1, "ES")  # five with statistics consent: shown
    assert _pool_gauge(hub) == {"SN": 5.0}
