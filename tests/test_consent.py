"""Consent on every disclosure, the personal view, erasure you can prove, deletion notices."""

from __future__ import annotations

import logging
import re
import urllib.request
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from spehub.v1 import audit_pb2, audit_pb2_grpc, consent_pb2, delivery_pb2, exchange_pb2, pool_pb2

from hub.domain import consent_policy, sealing
from hub.domain.audit import Disclosure
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main
from hub.store import schema as t
from tests.support.consents import consent_for, found, publish_candidate
from tests.support.records import demo_consent, demo_offer, demo_personal

SN, MA, FT, SE = "sn-anpej", "ma-anapec", "fr-francetravail", "se-arbetsformedlingen"
PERSONAL = "pd-1"
# The demo candidate's personal data, in the forms it could leak in. (Not the bare year: the
# metrics carry Unix timestamps, in which any four digits can appear by chance.)
SECRETS = ("Awa", "Diop", "+221770000000", "1998-04-12", "12/04/1998", "year: 1998")


def _ok(results):
    assert [exchange_pb2.RecordOutcome.Name(r.outcome) for r in results] == ["RECORD_OUTCOME_ACCEPTED"] * len(
        results
    ), [(r.field, r.message) for r in results]


def _personal(p):
    return p.exchange.GetRecord(
        exchange_pb2.GetRecordRequest(origin_participant_id=SN, payload_type=2, record_id=PERSONAL),
        timeout=10,
    )


def test_personal_view_needs_a_contact_release_naming_the_recipient(hub, connect):
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()))  # FR may search, no contact release
    assert found(ft) == 1
    with pytest.raises(grpc.RpcError) as err:
        _personal(ft)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    for secret in SECRETS:
        assert secret not in err.value.details()


def test_contact_release_gives_the_exact_signed_personal_view_and_is_recorded(hub, connect):
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    got = _personal(ft).envelope
    assert b"Diop" in got.payload and got.signer_participant_id == SN
    with pytest.raises(grpc.RpcError):
        _personal(connect(SE))  # not named
    report = audit_pb2_grpc.AuditServiceStub(sn.channel).SubjectAccessReport(
        audit_pb2.SubjectAccessReportRequest(consent_record_id="c-1"), timeout=10
    )
    actions = [(e.actor, e.action, e.purpose) for e in report.entries]
    assert (FT, "release.personal", "contact_release") in actions
    assert (SN, "consent.granted", "") in actions
    assert (SN, "publish", "") in actions


def test_contact_release_to_a_country_is_not_enough(hub, connect):
    sn, ft = connect(SN), connect(FT)
    consent = consent_for(SN, sn.clock())
    consent.purposes.append(
        consent_pb2.PurposeGrant(
            purpose=consent_pb2.PURPOSE_CONTACT_RELEASE, notice_version="2026-01", notice_language_code="fr"
        )
    )
    publish_candidate(sn, consent)  # contact release granted, but to the country FR only
    with pytest.raises(grpc.RpcError) as err:
        _personal(ft)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_personal_data_is_sealed_at_rest(hub, connect):
    sn = connect(SN)
    publish_candidate(sn, consent_for(SN, sn.clock()))
    with hub.store.unit_of_work() as uow:
        payloads = [row.payload for row in uow.conn.execute(t.envelopes.select())]
    sealed = [p for p in payloads if sealing.is_sealed(p)]
    assert len(sealed) == 2  # the profile and the personal view; the consent stays clear as evidence
    assert not any(secret.encode() in p for p in payloads for secret in SECRETS)


def test_erasure_makes_an_old_database_copy_unreadable_and_notifies_who_saw_it(hub, connect, clock):
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    assert found(ft) == 1
    _personal(ft)
    with hub.store.unit_of_work() as uow:  # a backup taken before the erasure
        old_copy = [(row.origin_id, row.payload) for row in uow.conn.execute(t.envelopes.select())]
    sealer = hub.sealer
    before = [e for e in sealer.open([_stored(o, p) for o, p in old_copy if sealing.is_sealed(p)])]
    assert all(e is not None and e.payload != b"" for e in before)  # readable while the key exists

    erase = consent_for(
        SN, sn.clock(), version=2, status=consent_pb2.CONSENT_STATUS_WITHDRAWN, erasure_requested=True
    )
    _ok(sn.publish_one_batch([sn.seal(erase, PayloadKind.CONSENT)]))

    after = sealer.open([_stored(o, p) for o, p in old_copy if sealing.is_sealed(p)])
    assert after == [None, None]  # the old copy no longer yields the personal data
    assert found(ft) == 0
    with pytest.raises(grpc.RpcError) as err:
        _personal(ft)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    notices = [
        r.delivery
        for r in ft.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
    ]
    deletion = [d for d in notices if d.kind == delivery_pb2.DELIVERY_KIND_DELETION]
    assert len(deletion) == 1 and deletion[0].erased.record_id == "c-1"

    # Unacknowledged beyond the deadline: visible as a metric.
    clock.advance(hours=73)
    hub.gauges.refresh()  # computed in the background otherwise
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    assert f'spehub_deletion_acks_overdue{{recipient="{FT}"}} 1.0' in body
    ft = connect(FT)  # time moved on: a fresh token
    ft.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=deletion[0].sequence), timeout=10)
    hub.gauges.refresh()
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    assert "spehub_deletion_acks_overdue{" not in body
    report = audit_pb2_grpc.AuditServiceStub(connect(SN).channel).SubjectAccessReport(
        audit_pb2.SubjectAccessReportRequest(consent_record_id="c-1"), timeout=10
    )
    actions = [e.action for e in report.entries]
    for expected in ("erasure.requested", "erasure.done", "deletion.acknowledged", "consent.withdrawn"):
        assert expected in actions


def _stored(origin, payload):
    from hub.domain.stored import StoredEnvelope

    return StoredEnvelope(0, 2, origin, "x", 1, payload, origin, "k", b"", 0, 0)


def test_transfer_rules_of_the_origin_country(hub, connect):
    ma = connect(MA)
    now = ma.clock()

    def consent_to(country, basis, reference=""):
        c = demo_consent(MA, f"c-{country}-{basis}", 1, now, recipient_countries=())
        c.recipients.append(
            consent_pb2.Recipient(country_code=country, transfer_basis=basis, basis_reference=reference)
        )
        return ma.seal(c, PayloadKind.CONSENT)

    results = ma.publish_one_batch(
        [
            consent_to("FR", consent_pb2.TRANSFER_BASIS_ADEQUACY),  # EU: on the CNDP's list
            consent_to("CA", consent_pb2.TRANSFER_BASIS_ADEQUACY),  # not on it
            consent_to("CA", consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION, "CNDP A-123"),
            consent_to("SE", consent_pb2.TRANSFER_BASIS_UNSPECIFIED),  # no basis at all
        ]
    )
    assert [r.outcome for r in results] == [
        exchange_pb2.RECORD_OUTCOME_ACCEPTED,
        exchange_pb2.RECORD_OUTCOME_REJECTED,
        exchange_pb2.RECORD_OUTCOME_ACCEPTED,
        exchange_pb2.RECORD_OUTCOME_REJECTED,
    ]
    assert results[1].field == "recipients[0].transfer_basis" and "CNDP" in results[1].message
    assert results[3].field == "recipients[0].transfer_basis"


@pytest.mark.parametrize(
    ("origin", "destination", "basis", "refused"),
    [
        ("TN", "FR", consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT, True),
        ("TN", "FR", consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION, False),
        ("BJ", "SE", consent_pb2.TRANSFER_BASIS_ADEQUACY, True),
        ("CM", "FR", consent_pb2.TRANSFER_BASIS_EXPLICIT_CONSENT, True),
        ("TN", "TN", consent_pb2.TRANSFER_BASIS_ADEQUACY, False),
        ("SN", "FR", consent_pb2.TRANSFER_BASIS_EXPLICIT_CONSENT, False),
        ("FR", "SN", consent_pb2.TRANSFER_BASIS_EXPLICIT_CONSENT, True),
        ("FR", "SN", consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT, False),
    ],
)
def test_transfer_problem_table(origin, destination, basis, refused):
    assert (consent_policy.transfer_problem(origin, destination, basis) is not None) == refused


def test_consent_validity_policy(hub, connect, clock):
    sn, ft = connect(SN), connect(FT)
    too_long = consent_for(SN, sn.clock())
    too_long.valid_until.FromDatetime(sn.clock() + timedelta(days=800))
    (result,) = sn.publish_one_batch([sn.seal(too_long, PayloadKind.CONSENT)])
    assert result.field == "valid_until" and "730" in result.message
    open_ended = consent_for(SN, sn.clock())
    open_ended.ClearField("valid_until")
    publish_candidate(sn, open_ended)
    assert found(ft) == 1
    # valid_from is a day ago: the default 365 days end 364 days from now.
    clock.advance(days=363)
    assert found(connect(FT)) == 1  # fresh connections: tokens follow the moved clock
    clock.advance(days=2)
    assert found(connect(FT)) == 0  # default validity of 365 days ran out


def test_no_personal_data_in_logs_metrics_or_errors(hub, connect, caplog):
    caplog.set_level(logging.DEBUG)
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    bad = demo_personal(SN, "pd-bad", "p-1", "c-1", 1, sn.clock())
    bad.contacts[0].value = "Awa Diop 1998"
    bad.birth_date.month = 13
    messages = [r.message for r in sn.publish_one_batch([sn.seal(bad, PayloadKind.PERSONAL_DETAILS)])]
    _personal(ft)
    found(ft)
    with pytest.raises(grpc.RpcError) as err:
        _personal(connect(SE))
    messages.append(err.value.details())
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        assert secret not in body
        assert secret not in logs
        assert not any(secret in m for m in messages), (secret, messages)


def test_deletions_overdue_command(hub, test_pki, database_url, monkeypatch, capsys):
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    assert main(["deletions", "overdue"]) == 0
    assert "no deletion notice" in capsys.readouterr().out


def test_each_recipient_sees_its_own_stable_pseudonym(hub, connect):
    sn, ft, se = connect(SN), connect(FT), connect(SE)
    consent = consent_for(SN, sn.clock())
    consent.recipients.append(
        consent_pb2.Recipient(country_code="SE", transfer_basis=consent_pb2.TRANSFER_BASIS_ADEQUACY)
    )
    publish_candidate(sn, consent)

    def pseudonyms(p):
        return [
            h.pseudonym for h in p.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10).profiles
        ]

    first, again, other = pseudonyms(ft), pseudonyms(ft), pseudonyms(se)
    assert len(first) == 1 and first == again  # stable for one recipient
    assert other and other != first  # another recipient gets another one
    assert "p-1" not in first[0]


def _disclose_by_search(sn, ft):
    assert found(ft) == 1


def _disclose_by_get(sn, ft):
    ft.exchange.GetRecord(
        exchange_pb2.GetRecordRequest(origin_participant_id=SN, payload_type=1, record_id="p-1"), timeout=10
    )


def _disclose_by_match(sn, ft):
    offer = demo_offer(FT, "o-disclose", 1, ft.clock(), targets=("SN",))
    _ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))
    response = ft.pool.MatchCandidates(
        pool_pb2.MatchCandidatesRequest(offer_record_id="o-disclose"), timeout=10
    )
    assert len(response.candidates) == 1


def _disclose_personal(sn, ft):
    _personal(ft)


DISCLOSE = {
    Disclosure.SEARCH: _disclose_by_search,
    Disclosure.GET: _disclose_by_get,
    Disclosure.MATCH: _disclose_by_match,
    Disclosure.PERSONAL: _disclose_personal,
}


def test_every_disclosure_action_is_exercised_here():
    """A new kind of disclosure must come with its way of disclosing in DISCLOSE below."""
    assert set(DISCLOSE) == set(Disclosure)


def test_no_disclosure_action_is_written_outside_the_one_list():
    """Services write disclosures with the Disclosure members, never a string of their own."""
    root = Path(__file__).resolve().parent.parent / "hub"
    pattern = re.compile(r"""["'](?:disclose|release)\.[a-z_]+["']""")
    found = [
        f"{path.relative_to(root)}: {m.group(0)}"
        for path in root.rglob("*.py")
        if path.name != "audit.py" or path.parent.name != "domain"
        for m in pattern.finditer(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize("action", list(Disclosure), ids=lambda a: a.value)
def test_each_kind_of_disclosure_leads_to_a_deletion_notice(hub, connect, action):
    sn, ft, se = connect(SN), connect(FT), connect(SE)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    DISCLOSE[action](sn, ft)
    erase = consent_for(
        SN, sn.clock(), version=2, status=consent_pb2.CONSENT_STATUS_WITHDRAWN, erasure_requested=True
    )
    _ok(sn.publish_one_batch([sn.seal(erase, PayloadKind.CONSENT)]))
    notices = {
        p.id: [
            r.delivery.erased.record_id
            for r in p.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
            if r.delivery.kind == delivery_pb2.DELIVERY_KIND_DELETION
        ]
        for p in (ft, se)
    }
    assert notices == {FT: ["c-1"], SE: []}  # SE saw nothing: it is told nothing
