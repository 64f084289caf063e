"""The mobility cycle: who may record which step, in which order; events signed, stored, routed and audited."""

from __future__ import annotations

import itertools
from datetime import timedelta

import grpc
import pytest
from spehub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    consent_pb2,
    delivery_pb2,
    exchange_pb2,
    mobility_pb2,
    mobility_pb2_grpc,
)

from hub.domain import mobility as rules
from hub.domain.records import PayloadKind
from tests.support.records import demo_consent, demo_offer, demo_profile

MA, SN, FT = "ma-anapec", "sn-anpej", "fr-francetravail"
E = mobility_pb2
APPLY, SHORT, SELECT, REJECT = (
    E.MOBILITY_EVENT_TYPE_APPLICATION,
    E.MOBILITY_EVENT_TYPE_SHORTLIST,
    E.MOBILITY_EVENT_TYPE_SELECTION,
    E.MOBILITY_EVENT_TYPE_REJECTION,
)
PREPARE, DEPART, END, RETURN, REINTEGRATE = (
    E.MOBILITY_EVENT_TYPE_PREPARATION,
    E.MOBILITY_EVENT_TYPE_DEPARTURE,
    E.MOBILITY_EVENT_TYPE_CONTRACT_END,
    E.MOBILITY_EVENT_TYPE_RETURN,
    E.MOBILITY_EVENT_TYPE_REINTEGRATION,
)
# The happy path of a seasonal worker, with who records each step.
HAPPY = [
    (MA, APPLY),
    (FT, SHORT),
    (FT, SELECT),
    (MA, PREPARE),
    (MA, DEPART),
    (FT, END),
    (MA, RETURN),
    (MA, REINTEGRATE),
]
_ids = itertools.count(1)


def _outcome(results):
    (r,) = results
    return exchange_pb2.RecordOutcome.Name(r.outcome), exchange_pb2.RejectionReason.Name(r.reason), r


def _event(p, app, kind, **kw):
    """Publish one event as ``p``; returns (outcome, reason, result)."""
    now = p.clock()
    event = E.MobilityEvent(
        application_origin_participant_id=kw.pop("app_origin", MA),
        application_id=app,
        type=kind,
        occurred_on=common_pb2.Date(year=now.year, month=now.month, day=now.day),
    )
    event.header.record_id, event.header.origin_participant_id, event.header.version = (
        f"ev-{next(_ids)}",
        p.id,
        1,
    )
    event.header.updated_at.FromDatetime(now)
    if kind == APPLY:
        event.profile_record_id = kw.pop("profile", "p-1")
        event.offer_origin_participant_id = kw.pop("offer_origin", FT)
        event.offer_record_id = kw.pop("offer", "o-1")
    if kind == PREPARE:
        event.preparation_step = kw.pop("step", E.PREPARATION_STEP_VISA_WORK_PERMIT)
    if kind == REINTEGRATE:
        event.reintegration_outcome = kw.pop("outcome", E.REINTEGRATION_OUTCOME_EMPLOYED)
    for key, value in kw.items():
        if key == "occurred_on":
            event.occurred_on.CopyFrom(value)
        else:
            setattr(event, key, value)
    return _outcome(p.publish_one_batch([p.seal(event, PayloadKind.MOBILITY_EVENT)]))


def _accepted(p, app, kind, **kw):
    outcome, reason, r = _event(p, app, kind, **kw)
    assert outcome == "RECORD_OUTCOME_ACCEPTED", (reason, r.field, r.message)


@pytest.fixture
def parties(hub, connect):
    """Morocco's candidate p-1 (consent naming France) and France Travail's seasonal offer o-1."""
    ma, ft = connect(MA), connect(FT)
    now = ma.clock()
    consent = demo_consent(MA, "c-1", 1, now, recipient_countries=("FR",))
    profile = demo_profile(MA, "p-1", "c-1", 1, now)
    profile.residence_country_code = "MA"
    results = ma.publish_one_batch(
        [ma.seal(consent, PayloadKind.CONSENT), ma.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
    )
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in results), results
    results = ft.publish_one_batch(
        [ft.seal(demo_offer(FT, "o-1", 1, now, targets=("MA",)), PayloadKind.JOB_OFFER)]
    )
    assert results[0].outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED
    return {MA: ma, FT: ft, SN: connect(SN)}


def test_a_seasonal_worker_goes_and_comes_back(parties, hub):
    ma, ft = parties[MA], parties[FT]
    for who, kind in HAPPY:
        _accepted(parties[who], "app-1", kind)
    cycle = ma_cycle = (
        mobility_pb2_grpc.MobilityServiceStub(ma.channel)
        .GetCycle(E.GetCycleRequest(application_origin_participant_id=MA, application_id="app-1"), timeout=10)
        .cycle
    )
    assert cycle.state == REINTEGRATE
    assert (cycle.profile_record_id, cycle.offer_origin_participant_id, cycle.offer_record_id) == (
        "p-1",
        FT,
        "o-1",
    )
    events = [E.MobilityEvent.FromString(env.payload) for env in ma_cycle.events]
    assert [e.type for e in events] == [kind for _, kind in HAPPY]
    assert [env.signer_participant_id for env in ma_cycle.events] == [who for who, _ in HAPPY]
    assert events[-1].reintegration_outcome == E.REINTEGRATION_OUTCOME_EMPLOYED
    # Each party receives the other's steps on its delivery stream, as signed records.
    for me, other in ((ma, FT), (ft, MA)):
        got = [
            r.delivery.envelope
            for r in me.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
            if r.delivery.envelope.payload_type == PayloadKind.MOBILITY_EVENT.payload_type
        ]
        assert [env.signer_participant_id for env in got] == [w for w, _ in HAPPY if w == other]
    # And every step is in the candidate's subject access report (under the candidate's consent).
    report = audit_pb2_grpc.AuditServiceStub(ma.channel).SubjectAccessReport(
        audit_pb2.SubjectAccessReportRequest(consent_record_id="c-1"), timeout=10
    )
    actions = [e.action for e in report.entries if e.action.startswith("mobility.")]
    assert actions == [f"mobility.{rules.name(kind).lower()}" for _, kind in HAPPY]


def test_the_returnee_is_republished_with_the_experience_gained_abroad(parties):
    ma = parties[MA]
    for who, kind in HAPPY[:7]:
        _accepted(parties[who], "app-1", kind)
    now = ma.clock()
    profile = demo_profile(MA, "p-1", "c-1", 2, now)
    profile.residence_country_code = "MA"
    start = now.date() - timedelta(days=200)
    profile.work_experiences.add(
        occupation=common_pb2.Occupation(isco08_code="9211", title="Ouvrier agricole saisonnier"),
        country_code="FR",
        period=common_pb2.DateRange(
            start=common_pb2.Date(year=start.year, month=start.month, day=start.day),
            end=common_pb2.Date(year=now.year, month=now.month, day=now.day),
        ),
    )
    (result,) = ma.publish_one_batch([ma.seal(profile, PayloadKind.CANDIDATE_PROFILE)])
    assert result.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED
    _accepted(ma, "app-1", REINTEGRATE, outcome=E.REINTEGRATION_OUTCOME_SELF_EMPLOYED)


def _reach(parties, app, path):
    for who, kind in path:
        _accepted(parties[who], app, kind)


# Each state the cycle can be in, and a path that reaches it.
STATES = {
    APPLY: HAPPY[:1],
    SHORT: HAPPY[:2],
    SELECT: HAPPY[:3],
    REJECT: [*HAPPY[:2], (FT, REJECT)],
    PREPARE: HAPPY[:4],
    DEPART: HAPPY[:5],
    END: HAPPY[:6],
    RETURN: HAPPY[:7],
    REINTEGRATE: HAPPY,
}


def test_every_forbidden_transition_is_refused(parties):
    refused = 0
    for n, (state, path) in enumerate(STATES.items()):
        app = f"app-{n}"
        _reach(parties, app, path)
        for kind, (who, after) in rules.RULES.items():
            if state in after:
                continue
            actor = MA if who is rules.Party.ORIGIN else FT
            outcome, reason, r = _event(parties[actor], app, kind)
            if kind == APPLY:  # opening an application id again
                assert reason == "REJECTION_REASON_INVALID_TRANSITION" and "already open" in r.message
            else:
                assert (outcome, reason) == (
                    "RECORD_OUTCOME_REJECTED",
                    "REJECTION_REASON_INVALID_TRANSITION",
                ), (
                    rules.name(state),
                    rules.name(kind),
                )
                assert f"cannot follow {rules.name(state)}" in r.message
            refused += 1
    assert refused == 81 - sum(len(after - {None}) for _, after in rules.RULES.values())


@pytest.mark.parametrize("kind", [k for k in rules.RULES if k != APPLY])
def test_every_step_by_the_wrong_party_is_refused(parties, kind):
    who, after = rules.RULES[kind]
    state = next(iter(sorted(s for s in after if s is not None)))
    _reach(parties, "app-x", STATES[state])
    wrong = FT if who is rules.Party.ORIGIN else MA
    _, reason, r = _event(parties[wrong], "app-x", kind)
    assert reason == "REJECTION_REASON_NOT_ENTITLED" and f"recorded by the {who.value}" in r.message
    # Someone outside the cycle learns nothing of it.
    _, reason, _ = _event(parties[SN], "app-x", kind)
    assert reason == "REJECTION_REASON_UNKNOWN_REFERENCE"


@pytest.mark.parametrize(
    ("overrides", "reason", "field"),
    [
        ({"profile": "p-nobody"}, "REJECTION_REASON_UNKNOWN_REFERENCE", "profile_record_id"),
        ({"offer": "o-nothing"}, "REJECTION_REASON_UNKNOWN_REFERENCE", "offer_record_id"),
        ({"app_origin": SN}, "REJECTION_REASON_NOT_ENTITLED", "type"),
    ],
)
def test_applications_need_a_real_profile_offer_and_opener(parties, overrides, reason, field):
    outcome, got, r = _event(parties[MA], "app-bad", APPLY, **overrides)
    assert (outcome, got, r.field) == ("RECORD_OUTCOME_REJECTED", reason, field)


def test_an_application_needs_the_candidates_consent_for_the_offers_origin(parties):
    ma = parties[MA]
    now = ma.clock()
    consent = demo_consent(MA, "c-2", 1, now, recipient_countries=("SE",))  # not France
    profile = demo_profile(MA, "p-2", "c-2", 1, now)
    profile.residence_country_code = "MA"
    ma.publish_one_batch(
        [ma.seal(consent, PayloadKind.CONSENT), ma.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
    )
    _, reason, r = _event(ma, "app-2", APPLY, profile="p-2")
    assert reason == "REJECTION_REASON_NOT_ENTITLED" and "consent does not allow" in r.message


def test_a_closed_offer_takes_no_application(parties, clock, connect):
    clock.advance(days=31)  # past the demo offer's deadline
    _, reason, r = _event(connect(MA), "app-late", APPLY)
    assert (reason, r.field) == (
        "REJECTION_REASON_INVALID_FIELD",
        "offer_record_id",
    ) and "closed" in r.message


def test_each_party_sees_its_cycles_and_nobody_else_does(parties):
    _reach(parties, "app-1", HAPPY[:3])
    _reach(parties, "app-2", HAPPY[:1])
    ma, ft, sn = parties[MA], parties[FT], parties[SN]

    def cycles(p, **kw):
        stub = mobility_pb2_grpc.MobilityServiceStub(p.channel)
        return [c.application_id for c in stub.ListCycles(E.ListCyclesRequest(**kw), timeout=10).cycles]

    assert cycles(ma) == ["app-2", "app-1"] and cycles(ft) == ["app-2", "app-1"]
    assert cycles(ma, state=SELECT) == ["app-1"] and cycles(ma, profile_record_id="p-1") == ["app-2", "app-1"]
    assert cycles(sn) == []
    page = mobility_pb2_grpc.MobilityServiceStub(ma.channel).ListCycles(
        E.ListCyclesRequest(page_size=1), timeout=10
    )
    assert [c.application_id for c in page.cycles] == ["app-2"] and page.next_page_token
    with pytest.raises(grpc.RpcError) as err:
        mobility_pb2_grpc.MobilityServiceStub(sn.channel).GetCycle(
            E.GetCycleRequest(application_origin_participant_id=MA, application_id="app-1"), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_event_fields_are_checked(parties):
    ma = parties[MA]
    for kw, field in (
        ({"note": "x" * 2001}, "note"),
        ({"preparation_step": E.PREPARATION_STEP_TRAINING}, "preparation_step"),
        ({"occurred_on": common_pb2.Date(year=2026, month=2, day=30)}, "occurred_on"),
    ):
        _, reason, r = _event(ma, "app-f", APPLY, **kw)
        assert (reason, r.field) == ("REJECTION_REASON_INVALID_FIELD", field)
    _, reason, r = _event(ma, "app-f", PREPARE, step=E.PREPARATION_STEP_UNSPECIFIED)
    assert (reason, r.field) == ("REJECTION_REASON_INVALID_FIELD", "preparation_step")


NOTE = "Entretien le 12 mars avec Mme Diop, visa en cours"


def test_erasure_reaches_the_mobility_cycle(parties, hub):
    """Events are sealed with the candidate's data key: after the erasure they are unreadable in
    the database (a copy taken before included), gone from GetCycle and ListCycles, the cycle keeps
    only its counts, and the other party is told to delete every event of it."""
    from hub.domain import sealing
    from hub.store import schema as t

    ma, ft = parties[MA], parties[FT]
    _accepted(ma, "app-1", APPLY, note=NOTE)
    _accepted(ft, "app-1", SHORT)
    _accepted(ft, "app-1", SELECT, note=NOTE)
    _accepted(ma, "app-1", PREPARE, note=NOTE)
    with hub.store.unit_of_work() as uow:  # a backup taken before the erasure
        events = [
            row.payload
            for row in uow.conn.execute(t.envelopes.select().where(t.envelopes.c.payload_type == 5))
        ]
    assert len(events) == 4 and all(sealing.is_sealed(p) for p in events)
    assert not any(NOTE.encode() in p for p in events)  # sealed at rest from the start (WAL included)
    ft_cycles = mobility_pb2_grpc.MobilityServiceStub(ft.channel)
    cycle = ft_cycles.GetCycle(
        E.GetCycleRequest(application_origin_participant_id=MA, application_id="app-1"), timeout=10
    ).cycle
    assert len(cycle.events) == 4
    assert NOTE in E.MobilityEvent.FromString(cycle.events[0].payload).note  # readable while consented
    drain = ft.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
    seen = [r.delivery.sequence for r in drain]

    erase = demo_consent(MA, "c-1", 2, ma.clock(), recipient_countries=("FR",))
    erase.status, erase.erasure_requested = consent_pb2.CONSENT_STATUS_WITHDRAWN, True
    assert ma.publish_one_batch([ma.seal(erase, PayloadKind.CONSENT)])[0].outcome == 1

    assert [p is None for p in hub.sealer.open([_stored(MA, p) for p in events])] == [True] * 4
    for stub, who in ((ft_cycles, FT), (mobility_pb2_grpc.MobilityServiceStub(ma.channel), MA)):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCycle(
                E.GetCycleRequest(application_origin_participant_id=MA, application_id="app-1"), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, who
        assert list(stub.ListCycles(E.ListCyclesRequest(), timeout=10).cycles) == [], who
    with hub.store.unit_of_work() as uow:
        (row,) = uow.conn.execute(t.mobility_cycles.select()).all()
        assert (row.profile_record_id, row.consent_record_id) == ("", "")
        assert row.application_id.startswith("erased-") and row.state == PREPARE  # the counts remain
    notices = [
        r.delivery
        for r in ft.delivery.Subscribe(
            delivery_pb2.SubscribeRequest(stop_when_drained=True, after_sequence=max(seen)), timeout=10
        )
        if r.delivery.kind == delivery_pb2.DELIVERY_KIND_DELETION
    ]
    erased = sorted((d.erased.origin_participant_id, d.erased.payload_type) for d in notices)
    assert erased == sorted([(MA, 5), (FT, 5), (FT, 5), (MA, 5)])  # every event of the cycle
    # The cycle takes no more steps, and says no more than for a cycle that never was.
    outcome, reason, r = _event(ma, "app-1", DEPART)
    assert (outcome, reason, r.field) == (
        "RECORD_OUTCOME_REJECTED",
        "REJECTION_REASON_UNKNOWN_REFERENCE",
        "application_id",
    )


def test_an_event_delivered_after_its_candidate_was_erased_is_not_sent(parties, hub):
    ma, ft = parties[MA], parties[FT]
    _accepted(ma, "app-2", APPLY, note=NOTE)  # routed to France Travail, not read yet
    erase = demo_consent(MA, "c-1", 2, ma.clock(), recipient_countries=("FR",))
    erase.status, erase.erasure_requested = consent_pb2.CONSENT_STATUS_WITHDRAWN, True
    ma.publish_one_batch([ma.seal(erase, PayloadKind.CONSENT)])
    kinds = [
        r.delivery.kind
        for r in ft.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
    ]
    # The event, sealed with the destroyed key, is skipped; its deletion notice comes.
    assert kinds == [delivery_pb2.DELIVERY_KIND_DELETION]


def _stored(origin, payload):
    from hub.domain.stored import StoredEnvelope

    return StoredEnvelope(0, 5, origin, "x", 1, payload, origin, "k", b"", 0, 0)


def test_an_event_stored_in_clear_before_sealing_is_emptied_at_erasure(parties, hub):
    """Events published before they were sealed (an older hub) hold the note in clear: the erasure
    empties their payload rather than leave it readable."""
    from hub.store import schema as t

    ma = parties[MA]
    _accepted(ma, "app-3", APPLY, note=NOTE)
    clear = demo_consent(MA, "c-1", 1, ma.clock())  # any protobuf payload, as the older hub stored it
    with hub.store.unit_of_work(write=True) as uow:
        uow.conn.execute(
            t.envelopes.update()
            .where(t.envelopes.c.payload_type == 5)
            .values(payload=clear.SerializeToString())
        )
        uow.commit()
    erase = demo_consent(MA, "c-1", 2, ma.clock(), recipient_countries=("FR",))
    erase.status, erase.erasure_requested = consent_pb2.CONSENT_STATUS_WITHDRAWN, True
    ma.publish_one_batch([ma.seal(erase, PayloadKind.CONSENT)])
    with hub.store.unit_of_work() as uow:
        payloads = [
            r.payload for r in uow.conn.execute(t.envelopes.select().where(t.envelopes.c.payload_type == 5))
        ]
    assert payloads == [b""]
