"""``spe-hub demo``: a real exchange against a running hub, printed step by step.

Senegal's SPE publishes a consent, signed candidate profiles and one personal
view; France Travail publishes a seasonal offer addressed to Senegal and Mali,
searches the pool and finds the profiles; Senegal's SPE receives the offer on
its subscription, verifies it offline and acknowledges it. Every record is
fictional. Versions are the run's Unix time, so each run publishes new versions.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from spehub.v1 import (
    common_pb2,
    consent_pb2,
    delivery_pb2,
    delivery_pb2_grpc,
    envelope_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    offer_pb2,
    pool_pb2,
    pool_pb2_grpc,
    profile_pb2,
)

from hub.client import authorized_channel, seal
from hub.clock import proto_date, timestamp
from hub.domain.directory import Directory
from hub.domain.envelopes import envelope_from_proto, open_envelope
from hub.domain.records import PayloadKind
from hub.domain.signing import load_private_key

ORIGIN = "sn-anpej"
AGENCY = "fr-francetravail"


@dataclass(frozen=True)
class Identity:
    """What a participant's system holds: its client certificate and its signing key."""

    participant_id: str
    cert_pem: bytes
    key_pem: bytes
    signing_key_pem: bytes
    key_id: str

    @classmethod
    def from_pki(cls, pki_dir: Path, participant_id: str) -> Identity:
        folder = pki_dir / "participants" / participant_id
        return cls(
            participant_id,
            (folder / "client.pem").read_bytes(),
            (folder / "client-key.pem").read_bytes(),
            (folder / "signing-key.pem").read_bytes(),
            (folder / "key-id").read_text().strip(),
        )

    def channel(self, target: str, ca_pem: bytes) -> grpc.Channel:
        """mTLS, with hub access tokens obtained and renewed on the way."""
        return authorized_channel(target, ca_pem, self.cert_pem, self.key_pem)

    def seal(self, record: object, kind: PayloadKind) -> envelope_pb2.SignedEnvelope:
        key = load_private_key(self.signing_key_pem, f"signing key of {self.participant_id}")
        return seal(record, kind, self.participant_id, self.key_id, key, datetime.now(UTC))  # type: ignore[arg-type]


def header(origin: str, record_id: str, version: int, now: datetime) -> common_pb2.RecordHeader:
    return common_pb2.RecordHeader(
        record_id=record_id, origin_participant_id=origin, version=version, updated_at=timestamp(now)
    )


def demo_consent(
    origin: str,
    record_id: str,
    version: int,
    now: datetime,
    recipient_countries: tuple[str, ...] = ("FR", "SE"),
) -> consent_pb2.Consent:
    """A consent to pool search and matching by the agencies of the given countries, for one year."""
    return consent_pb2.Consent(
        header=header(origin, record_id, version, now),
        subject_ref=hashlib.sha256(f"demo-subject-{record_id}".encode()).hexdigest(),
        status=consent_pb2.CONSENT_STATUS_ACTIVE,
        purposes=[
            consent_pb2.PurposeGrant(purpose=p, notice_version="2026-01", notice_language_code="fr")
            for p in (consent_pb2.PURPOSE_POOL_SEARCH, consent_pb2.PURPOSE_MATCHING)
        ],
        recipients=[
            consent_pb2.Recipient(
                country_code=c,
                transfer_basis=consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT,
                basis_reference=f"SN-{c} labour mobility agreement (demo)",
            )
            for c in recipient_countries
        ],
        data_categories=[consent_pb2.DATA_CATEGORY_PROFESSIONAL],
        valid_from=timestamp(now - timedelta(days=1)),
        valid_until=timestamp(now + timedelta(days=365)),
        retention_days=365,
        evidence=consent_pb2.Evidence(
            channel=consent_pb2.COLLECTION_CHANNEL_COUNSELLOR,
            collected_at=timestamp(now - timedelta(days=1)),
            collected_by="counsellor-0042",
            notice_sha256=hashlib.sha256(b"notice 2026-01 fr").hexdigest(),
        ),
    )


def demo_profile(
    origin: str, record_id: str, consent_id: str, version: int, now: datetime, isco: str = "9211"
) -> profile_pb2.CandidateProfile:
    """A seasonal farm worker from Senegal who speaks Wolof and French and wants to work in France or Spain."""
    return profile_pb2.CandidateProfile(
        header=header(origin, record_id, version, now),
        consent_record_id=consent_id,
        residence_country_code="SN",
        occupations=[
            common_pb2.Occupation(
                isco08_code=isco,
                national_code=common_pb2.NationalCode(system="ROAME", code="A1401", label="Aide agricole"),
                title="Ouvrier agricole maraîcher",
            )
        ],
        skills=[common_pb2.Skill(label="récolte de légumes")],
        languages=[
            common_pb2.LanguageSkill(language_code="wo", level=common_pb2.CEFR_LEVEL_NATIVE),
            common_pb2.LanguageSkill(language_code="fr", level=common_pb2.CEFR_LEVEL_B2),
        ],
        desired_country_codes=["FR", "ES"],
        mobility_types=[common_pb2.MOBILITY_TYPE_SEASONAL, common_pb2.MOBILITY_TYPE_CIRCULAR],
        available_from=proto_date(now.date()),
        summary="Five seasons of vegetable harvesting in the Niayes area.",
    )


def demo_personal(
    origin: str, record_id: str, profile_id: str, consent_id: str, version: int, now: datetime
) -> profile_pb2.PersonalDetails:
    """The personal view of a demo candidate (fictional)."""
    return profile_pb2.PersonalDetails(
        header=header(origin, record_id, version, now),
        profile_record_id=profile_id,
        consent_record_id=consent_id,
        given_names="Awa",
        family_name="Diop",
        birth_date=common_pb2.Date(year=1998, month=4, day=12),
        nationality_country_codes=["SN"],
        contacts=[profile_pb2.Contact(type=profile_pb2.CONTACT_TYPE_PHONE, value="+221770000000")],
    )


def demo_offer(
    origin: str, record_id: str, version: int, now: datetime, targets: tuple[str, ...] = ("SN", "ML")
) -> offer_pb2.JobOffer:
    """A seasonal vegetable-harvest offer in France, addressed to the given origin countries."""
    start = now.date() + timedelta(days=60)
    return offer_pb2.JobOffer(
        header=header(origin, record_id, version, now),
        employer=offer_pb2.Employer(
            name="EARL Les Jardins du Midi (demo)", country_code="FR", nace_code="01.13"
        ),
        title="Ouvrier agricole saisonnier - maraîchage",
        occupation=common_pb2.Occupation(
            isco08_code="9211",
            national_code=common_pb2.NationalCode(
                system="ROME", code="A1401", label="Aide agricole de production légumière ou végétale"
            ),
        ),
        positions=12,
        place=common_pb2.Place(country_code="FR", region="Occitanie", locality="Perpignan"),
        contract=offer_pb2.Contract(
            type=offer_pb2.CONTRACT_TYPE_SEASONAL,
            mobility_type=common_pb2.MOBILITY_TYPE_SEASONAL,
            start_date=proto_date(start),
            duration_months=6,
            seasonal_window=common_pb2.DateRange(
                start=proto_date(start), end=proto_date(start + timedelta(days=180))
            ),
        ),
        pay=common_pb2.Pay(
            min_minor_units=1183, max_minor_units=1183, currency_code="EUR", period=common_pb2.PAY_PERIOD_HOUR
        ),
        weekly_hours=35,
        required_languages=[common_pb2.LanguageSkill(language_code="fr", level=common_pb2.CEFR_LEVEL_A2)],
        provisions=offer_pb2.Provisions(travel=True, housing=True, training=True),
        application_deadline=proto_date(now.date() + timedelta(days=30)),
        target_country_codes=list(targets),
        description="Harvest and packing of vegetables under cover.",
    )


def _print_results(response: exchange_pb2.PublishResponse) -> None:
    for r in response.results:
        outcome = exchange_pb2.RecordOutcome.Name(r.outcome).removeprefix("RECORD_OUTCOME_")
        detail = f"  {exchange_pb2.RejectionReason.Name(r.reason)}: {r.message}" if r.reason else ""
        print(f"    [{r.index}] {r.record_id} v{r.version}: {outcome}{detail}")


def run_demo(target: str, pki_dir: Path, out_dir: Path, say: object = print) -> dict[str, int]:
    """Run the exchange against the hub at ``target``. Returns counts of what happened.

    Raises grpc.RpcError if the hub refuses a call.
    """
    out = say if callable(say) else print
    ca = (pki_dir / "ca.pem").read_bytes()
    directory = Directory.load(pki_dir / "registry.json")
    origin = Identity.from_pki(pki_dir, ORIGIN)
    agency = Identity.from_pki(pki_dir, AGENCY)
    now = datetime.now(UTC)
    version = int(time.time())
    counts = {"accepted": 0, "duplicate": 0, "found": 0, "delivered": 0}

    out(f"1. {ORIGIN} publishes a consent, 3 signed profiles and one personal view (version {version})")
    batch = [origin.seal(demo_consent(ORIGIN, "sn-consent-1", version, now), PayloadKind.CONSENT)]
    for i in range(1, 4):
        batch.append(
            origin.seal(
                demo_profile(ORIGIN, f"sn-cand-{i}", "sn-consent-1", version, now),
                PayloadKind.CANDIDATE_PROFILE,
            )
        )
    batch.append(
        origin.seal(
            demo_personal(ORIGIN, "sn-person-1", "sn-cand-1", "sn-consent-1", version, now),
            PayloadKind.PERSONAL_DETAILS,
        )
    )
    with origin.channel(target, ca) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        requests = [exchange_pb2.PublishRequest(request_id="demo-1", envelopes=batch)] * 2
        responses = list(stub.Publish(iter(requests), timeout=30))
    _print_results(responses[0])
    out("   the same batch again (a retry): nothing is stored twice")
    _print_results(responses[1])
    for resp in responses:
        for r in resp.results:
            counts["accepted"] += r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED
            counts["duplicate"] += r.outcome == exchange_pb2.RECORD_OUTCOME_DUPLICATE

    out(f"2. {AGENCY} publishes a seasonal offer addressed to SN and ML")
    with agency.channel(target, ca) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        offer = agency.seal(demo_offer(AGENCY, "ft-offer-1", version, now), PayloadKind.JOB_OFFER)
        (resp,) = stub.Publish(
            iter([exchange_pb2.PublishRequest(request_id="demo-2", envelopes=[offer])]), timeout=30
        )
        _print_results(resp)

        out(f"3. {AGENCY} searches the pool: ISCO group 92, French B1 or better, wants FR, seasonal")
        pool = pool_pb2_grpc.PoolServiceStub(channel)
        found = pool.SearchProfiles(
            pool_pb2.SearchProfilesRequest(
                isco08_codes=["92"],
                languages=[common_pb2.LanguageSkill(language_code="fr", level=common_pb2.CEFR_LEVEL_B1)],
                destination_country_code="FR",
                mobility_types=[common_pb2.MOBILITY_TYPE_SEASONAL],
            ),
            timeout=30,
        )
        for hit in found.profiles:
            rec = open_envelope(
                envelope_from_proto(hit.profile), directory, datetime.now(UTC), timedelta(minutes=5)
            )
            out(
                f"    found {rec.record_id} v{rec.version} from {hit.origin_country_code}; signature of {rec.origin_id} verified offline"
            )
            counts["found"] += 1

    out(f"4. {ORIGIN} reads its subscription")
    with origin.channel(target, ca) as channel:
        delivery = delivery_pb2_grpc.DeliveryServiceStub(channel)
        last = 0
        for item in delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30):
            env = item.delivery.envelope
            rec = open_envelope(envelope_from_proto(env), directory, datetime.now(UTC), timedelta(minutes=5))
            out(
                f"    delivery #{item.delivery.sequence}: {rec.kind.value} {rec.record_id} v{rec.version} from {rec.origin_id}, verified"
            )
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "offer.envelope.pb").write_bytes(env.SerializeToString())
            last = item.delivery.sequence
            counts["delivered"] += 1
        if last:
            cursor = delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=last), timeout=30).cursor
            out(f"    acknowledged up to #{cursor}; the next subscription starts after it")
            out(
                f"5. check the received offer offline: spe-hub verify {out_dir / 'offer.envelope.pb'} --registry {pki_dir / 'registry.json'}"
            )
    return counts
