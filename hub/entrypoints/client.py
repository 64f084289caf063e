"""A participant's commands against a running hub: publish a signed record, match, record cycle steps.

``spe-hub records publish``, ``spe-hub match candidates|offers`` and
``spe-hub mobility record|cycle|list`` act as one participant, with its client
certificate and signing key from the PKI folder (``--pki``, the dev PKI by
default). Records are signed on this side; the hub never sees the key.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from spehub.v1 import (
    consent_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    mobility_pb2,
    mobility_pb2_grpc,
    offer_pb2,
    pool_pb2,
    pool_pb2_grpc,
    profile_pb2,
)

from hub.client import pki_channel, pki_signing_key, seal
from hub.clock import proto_date
from hub.domain.records import PayloadKind
from hub.entrypoints.options import add_hub_option

TYPES: dict[str, tuple[PayloadKind, Any]] = {
    "consent": (PayloadKind.CONSENT, consent_pb2.Consent),
    "profile": (PayloadKind.CANDIDATE_PROFILE, profile_pb2.CandidateProfile),
    "personal": (PayloadKind.PERSONAL_DETAILS, profile_pb2.PersonalDetails),
    "offer": (PayloadKind.JOB_OFFER, offer_pb2.JobOffer),
    "event": (PayloadKind.MOBILITY_EVENT, mobility_pb2.MobilityEvent),
}
EVENTS = {
    name.removeprefix("MOBILITY_EVENT_TYPE_").lower().replace("_", "-"): value
    for name, value in mobility_pb2.MobilityEventType.items()
    if value
}
STEPS = {
    name.removeprefix("PREPARATION_STEP_").lower().replace("_", "-"): value
    for name, value in mobility_pb2.PreparationStep.items()
    if value
}
OUTCOMES = {
    name.removeprefix("REINTEGRATION_OUTCOME_").lower().replace("_", "-"): value
    for name, value in mobility_pb2.ReintegrationOutcome.items()
    if value
}


def _channel(a: argparse.Namespace) -> grpc.Channel:
    return pki_channel(a.hub, Path(a.pki), a.participant)


def _publish(a: argparse.Namespace, record: Any, kind: PayloadKind) -> int:
    """Sign ``record`` as the participant and publish it; print the hub's answer."""
    key_id, key = pki_signing_key(Path(a.pki), a.participant)
    envelope = seal(record, kind, a.participant, key_id, key, datetime.now(UTC))
    with _channel(a) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        (response,) = stub.Publish(
            iter([exchange_pb2.PublishRequest(request_id="cli", envelopes=[envelope])]), timeout=30
        )
    (result,) = response.results
    outcome = exchange_pb2.RecordOutcome.Name(result.outcome).removeprefix("RECORD_OUTCOME_").lower()
    if result.outcome == exchange_pb2.RECORD_OUTCOME_REJECTED:
        reason = exchange_pb2.RejectionReason.Name(result.reason).removeprefix("REJECTION_REASON_")
        print(f"{record.header.record_id}: refused, {reason}: {result.field}: {result.message}")
        return 1
    print(f"{record.header.record_id} v{record.header.version}: {outcome}")
    return 0


def run_publish(a: argparse.Namespace) -> int:
    """``records publish TYPE FILE``: a record in protobuf JSON, completed with what only signing time knows."""
    kind, message_class = TYPES[a.type]
    record = json_format.Parse(Path(a.file).read_text(encoding="utf-8"), message_class())
    now = datetime.now(UTC)
    record.header.origin_participant_id = record.header.origin_participant_id or a.participant
    record.header.version = record.header.version or 1
    if not record.header.HasField("updated_at"):
        record.header.updated_at.FromDatetime(now)
    if kind is PayloadKind.CONSENT:
        # A consent given now: its validity and its evidence start at signing when the file leaves them out.
        if not record.HasField("valid_from"):
            record.valid_from.FromDatetime(now)
        if not record.evidence.HasField("collected_at"):
            record.evidence.collected_at.FromDatetime(now)
    return _publish(a, record, kind)


def _print_match(rank: int, title: str, score: pool_pb2.MatchScore) -> None:
    print(f"{rank:3}. {title}  score {score.score}")
    for line in score.explanations:
        print(f"       {line}")


def run_match(a: argparse.Namespace) -> int:
    with _channel(a) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        if a.action == "candidates":
            response = stub.MatchCandidates(
                pool_pb2.MatchCandidatesRequest(
                    offer_record_id=a.offer, offer_origin_participant_id=a.offer_origin, page_size=a.limit
                ),
                timeout=30,
            )
            print(f"{len(response.candidates)} candidate(s) for {a.offer}, best first:")
            for i, c in enumerate(response.candidates, 1):
                _print_match(i, f"{c.pseudonym} ({c.origin_country_code})", c.match)
        else:
            offers = stub.MatchOffers(
                pool_pb2.MatchOffersRequest(profile_record_id=a.profile, page_size=a.limit), timeout=30
            )
            print(f"{len(offers.offers)} offer(s) for {a.profile}, best first:")
            for i, o in enumerate(offers.offers, 1):
                offer = offer_pb2.JobOffer.FromString(o.offer.payload)
                _print_match(
                    i, f"{offer.header.record_id} {offer.title} ({offer.place.country_code})", o.match
                )
    return 0


def run_mobility(a: argparse.Namespace) -> int:
    if a.action == "record":
        on = date.fromisoformat(a.on) if a.on else datetime.now(UTC).date()
        event = mobility_pb2.MobilityEvent(
            application_origin_participant_id=a.origin or a.participant,
            application_id=a.application,
            type=EVENTS[a.step],
            occurred_on=proto_date(on),
            profile_record_id=a.profile,
            offer_origin_participant_id=a.offer_origin,
            offer_record_id=a.offer,
            preparation_step=STEPS.get(a.preparation, 0),  # type: ignore[arg-type]
            reintegration_outcome=OUTCOMES.get(a.outcome, 0),  # type: ignore[arg-type]
            note=a.note,
        )
        event.header.record_id = (
            a.event_id or f"{a.application}.{a.step}.{int(datetime.now(UTC).timestamp() * 1000)}"
        )
        event.header.origin_participant_id = a.participant
        event.header.version = 1
        event.header.updated_at.FromDatetime(datetime.now(UTC))
        return _publish(a, event, PayloadKind.MOBILITY_EVENT)
    with _channel(a) as channel:
        stub = mobility_pb2_grpc.MobilityServiceStub(channel)
        if a.action == "cycle":
            cycles = [
                stub.GetCycle(
                    mobility_pb2.GetCycleRequest(
                        application_origin_participant_id=a.origin or a.participant,
                        application_id=a.application,
                    ),
                    timeout=30,
                ).cycle
            ]
        else:
            cycles = list(stub.ListCycles(mobility_pb2.ListCyclesRequest(page_size=100), timeout=30).cycles)
    for cycle in cycles:
        state = mobility_pb2.MobilityEventType.Name(cycle.state).removeprefix("MOBILITY_EVENT_TYPE_").lower()
        print(
            f"{cycle.application_origin_participant_id}/{cycle.application_id}: profile {cycle.profile_record_id}, "
            f"offer {cycle.offer_origin_participant_id}/{cycle.offer_record_id}, now {state}"
        )
        if a.action == "cycle":
            for env in cycle.events:
                e = mobility_pb2.MobilityEvent.FromString(env.payload)
                step = (
                    mobility_pb2.MobilityEventType.Name(e.type).removeprefix("MOBILITY_EVENT_TYPE_").lower()
                )
                d = e.occurred_on
                print(f"  {d.year:04d}-{d.month:02d}-{d.day:02d}  {step:14} by {env.signer_participant_id}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--participant", required=True)
    p.add_argument("--pki", default="certs/dev", help="folder with ca.pem and participants/<id>/")
    add_hub_option(p)


def _guard(func: Any) -> Any:
    def run(a: argparse.Namespace) -> int:
        try:
            return int(func(a))
        except grpc.RpcError as exc:
            print(f"spe-hub: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1

    return run


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("records", help="sign and publish one record written in protobuf JSON")
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("publish", help="TYPE FILE: sign FILE as the participant and publish it")
    p.add_argument("type", choices=sorted(TYPES))
    p.add_argument("file")
    _common(p)
    p.set_defaults(func=_guard(run_publish))

    parser = sub.add_parser(
        "match", help="ranked and explained candidates for an offer, or offers for a candidate"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("candidates", help="the candidates for an offer")
    p.add_argument("--offer", required=True)
    p.add_argument("--offer-origin", default="", help="the offer's origin if not the participant")
    p.add_argument("--limit", type=int, default=10)
    _common(p)
    p.set_defaults(func=_guard(run_match))
    p = actions.add_parser("offers", help="the offers for one of the participant's candidates")
    p.add_argument("--profile", required=True)
    p.add_argument("--limit", type=int, default=10)
    _common(p)
    p.set_defaults(func=_guard(run_match))

    parser = sub.add_parser("mobility", help="record a step of a mobility cycle, or read cycles")
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("record", help="STEP: sign and publish one step of a cycle")
    p.add_argument("step", choices=sorted(EVENTS))
    p.add_argument("--application", required=True)
    p.add_argument("--origin", default="", help="the SPE that opened the cycle (default: the participant)")
    p.add_argument("--profile", default="", help="application: the candidate's profile")
    p.add_argument("--offer-origin", default="", help="application: the offer's origin")
    p.add_argument("--offer", default="", help="application: the offer")
    p.add_argument("--preparation", default="", choices=["", *sorted(STEPS)])
    p.add_argument("--outcome", default="", choices=["", *sorted(OUTCOMES)])
    p.add_argument("--on", default="", help="YYYY-MM-DD (default: today)")
    p.add_argument("--note", default="")
    p.add_argument("--event-id", default="")
    _common(p)
    p.set_defaults(func=_guard(run_mobility))
    p = actions.add_parser("cycle", help="one cycle and its steps")
    p.add_argument("--application", required=True)
    p.add_argument("--origin", default="")
    _common(p)
    p.set_defaults(func=_guard(run_mobility))
    p = actions.add_parser("list", help="the participant's cycles")
    _common(p)
    p.set_defaults(func=_guard(run_mobility))
