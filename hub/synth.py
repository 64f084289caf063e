"""Synthetic, realistic records for the partnership's countries: deterministic by seed, fast, fictional.

Each candidate is three records: a consent (pool search, matching, statistics,
naming the destination countries with the transfer basis the origin's law
asks for), the professional profile and the personal details, with names in
the country's languages and scripts (Arabic script for Morocco, Tunisia and
Mauritania, where exports carry it), phone numbers valid in the country's
numbering plan, ISCO-08 occupations with the skewed spread of labour-mobility
programmes (farm work, construction, care, hospitality, transport first),
CEFR levels and the mobility types wanted. Offers come from the destination
agencies, addressed to origin countries. The same seed gives the same records.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import phonenumbers
from spehub.v1 import common_pb2, consent_pb2, offer_pb2, profile_pb2

from hub.clock import proto_date, timestamp

C = common_pb2
DESTINATIONS = ("FR", "ES", "IT", "DE", "BE", "SE", "PT", "NL")
EU_EEA = frozenset({"FR", "ES", "IT", "DE", "BE", "SE", "PT", "NL"})
DPA_COUNTRIES = frozenset({"TN", "BJ", "CM"})  # exports need the data-protection authority's authorisation


@dataclass(frozen=True)
class Country:
    code: str
    spe: str
    # (given names, family names) in the scripts the SPE's exports use
    given: tuple[str, ...]
    family: tuple[str, ...]
    mother_tongues: tuple[str, ...]
    second_languages: tuple[str, ...]
    phone_prefixes: tuple[str, ...]  # E.164 prefixes of mobile numbers
    phone_digits: int  # digits after the prefix


COUNTRIES = {
    c.code: c
    for c in (
        Country(
            "SN",
            "sn-anpej",
            ("Aminata", "Mamadou", "Fatou", "Ousmane", "Awa", "Cheikh", "Ndèye", "Ibrahima"),
            ("Diop", "Ndiaye", "Fall", "Sow", "Gueye", "Ba", "Faye", "Sène"),
            ("wo",),
            ("fr", "en"),
            ("+22177", "+22176", "+22170"),
            7,
        ),
        Country(
            "ML",
            "ml-anpe",
            ("Fatoumata", "Moussa", "Oumou", "Bakary", "Aïssata", "Seydou", "Mariam", "Drissa"),
            ("Traoré", "Keïta", "Coulibaly", "Diarra", "Konaté", "Sangaré", "Touré", "Dembélé"),
            ("bm",),
            ("fr",),
            ("+2237", "+2236"),
            7,
        ),
        Country(
            "BJ",
            "bj-anpe",
            ("Koffi", "Afiavi", "Sèna", "Rodrigue", "Gbènou", "Mireille", "Codjo", "Adjoa"),
            ("Houngbédji", "Adjovi", "Dossou", "Agossou", "Hounkpè", "Zinsou", "Ahouandjinou", "Tossou"),
            ("fon",),
            ("fr",),
            ("+22901",),
            8,
        ),
        Country(
            "CM",
            "cm-fne",
            ("Jean-Pierre", "Brigitte", "Emmanuel", "Nadège", "Boris", "Carine", "Hervé", "Sandrine"),
            ("Mbarga", "Ngo Bassa", "Fotso", "Tchoumi", "Nkodo", "Eto'o", "Kamga", "Abena"),
            ("fr",),
            ("en",),
            ("+2376",),
            8,
        ),
        Country(
            "TG",
            "tg-anpe",
            ("Afi", "Yao", "Komla", "Akossiwa", "Kossi", "Ablavi", "Kodjo", "Essi"),
            ("Agbéko", "Amouzou", "Lawson", "Adjamagbo", "Kpodar", "Tchalla", "Gnassingbé", "Akakpo"),
            ("ee",),
            ("fr",),
            ("+2289",),
            7,
        ),
        Country(
            "GH",
            "gh-pec",
            ("Kwame", "Ama", "Kofi", "Akosua", "Yaw", "Abena", "Kwabena", "Efua"),
            ("Mensah", "Owusu", "Asante", "Boateng", "Osei", "Appiah", "Agyeman", "Darko"),
            ("ak",),
            ("en",),
            ("+23324", "+23354", "+23320"),
            7,
        ),
        Country(
            "CV",
            "cv-iefp",
            ("João", "Maria", "Djeison", "Ana", "Nilton", "Odete", "Adilson", "Carla"),
            ("Tavares", "Gomes", "Semedo", "Fortes", "Monteiro", "Lopes", "Varela", "Silva"),
            ("kea",),
            ("pt", "fr"),
            ("+2389",),
            6,
        ),
        Country(
            "MA",
            "ma-anapec",
            ("فاطمة الزهراء", "محمد", "خديجة", "يوسف", "Salma", "Hamza", "نادية", "Mehdi"),
            ("بنعلي", "العلوي", "الإدريسي", "Benali", "El Amrani", "التازي", "Bennani", "الفاسي"),
            ("ar",),
            ("fr", "en", "es"),
            ("+2126", "+2127"),
            8,
        ),
        Country(
            "TN",
            "tn-aneti",
            ("أميرة", "محمد أمين", "Sarra", "Aymen", "مريم", "Walid", "إيناس", "Hatem"),
            ("بن سالم", "الطرابلسي", "Ben Salem", "Trabelsi", "الجبالي", "Gharbi", "المرزوقي", "Jaziri"),
            ("ar",),
            ("fr", "en", "de"),
            ("+2162", "+2165", "+2169"),
            7,
        ),
        Country(
            "MR",
            "mr-techghil",
            ("محمد", "مريم", "أحمد", "فاطمة", "Sidi", "Aïchetou", "الشيخ", "Mohamed Lemine"),
            (
                "ولد أحمد",
                "منت محمد",
                "ولد سيدي",
                "Ould Ahmed",
                "Mint Mohamed",
                "ولد الشيخ",
                "Ould Sidi",
                "منت أحمد",
            ),
            ("ar",),
            ("fr",),
            ("+2222", "+2223", "+2224"),
            7,
        ),
    )
}
# ISCO-08 unit groups of labour-mobility programmes, with relative weights (farm work first).
OCCUPATIONS = (
    ("9211", 30),
    ("6111", 8),
    ("9213", 6),
    ("6121", 3),
    ("9212", 3),
    ("7112", 6),
    ("9313", 6),
    ("7115", 3),
    ("7126", 3),
    ("7411", 3),
    ("7212", 2),
    ("7231", 2),
    ("5322", 5),
    ("3221", 2),
    ("2221", 2),
    ("5120", 4),
    ("5131", 3),
    ("9412", 3),
    ("9112", 4),
    ("5141", 1),
    ("8322", 3),
    ("8332", 3),
    ("9333", 3),
    ("8341", 2),
    ("7512", 2),
    ("7513", 1),
    ("9329", 2),
    ("2512", 1),
)
SKILLS = {
    "92": ("harvest crops", "operate agricultural machinery", "pack fruit and vegetables", "prune plants"),
    "61": ("plant crops", "irrigate fields", "apply fertilisers"),
    "71": ("lay bricks", "read blueprints", "install pipes", "mix concrete"),
    "93": ("operate a forklift", "carry loads", "clean construction sites"),
    "74": ("install electrical wiring", "test electrical equipment"),
    "72": ("weld metal", "repair engines"),
    "53": ("assist patients with daily activities", "administer first aid"),
    "32": ("administer first aid", "monitor patients' vital signs"),
    "22": ("monitor patients' vital signs", "administer medication"),
    "51": ("prepare food", "serve customers", "follow hygiene rules"),
    "94": ("prepare food", "wash dishes"),
    "91": ("clean rooms", "follow hygiene rules"),
    "83": ("drive heavy vehicles", "plan routes"),
    "75": ("bake bread", "process meat"),
    "25": ("develop software",),
}
MOBILITY = (
    (C.MOBILITY_TYPE_SEASONAL, 45),
    (C.MOBILITY_TYPE_TEMPORARY, 30),
    (C.MOBILITY_TYPE_PERMANENT, 15),
    (C.MOBILITY_TYPE_CIRCULAR, 10),
)
LEVELS = (C.CEFR_LEVEL_A1, C.CEFR_LEVEL_A2, C.CEFR_LEVEL_B1, C.CEFR_LEVEL_B2, C.CEFR_LEVEL_C1)
AGENCIES = (("fr-francetravail", "FR"), ("se-arbetsformedlingen", "SE"), ("eu-eures", ""))


def _phone(rng: random.Random, country: Country) -> str:
    """A mobile number valid in the country's numbering plan (libphonenumber's metadata decides)."""
    for _ in range(50):
        number = rng.choice(country.phone_prefixes) + "".join(
            str(rng.randrange(10)) for _ in range(country.phone_digits)
        )
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number
    example = phonenumbers.example_number_for_type(country.code, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None, country.code
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def _weighted(rng: random.Random, table: tuple[tuple[object, int], ...]) -> object:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def candidates(
    seed: int, count: int, now: datetime, countries: tuple[str, ...] = tuple(COUNTRIES), start: int = 0
) -> Iterator[tuple[consent_pb2.Consent, profile_pb2.CandidateProfile, profile_pb2.PersonalDetails]]:
    """``count`` candidates spread over ``countries`` (same seed, same candidates). Records are version 1."""
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    ts_now = timestamp(now)
    valid_from = timestamp(now - timedelta(days=1))
    for i in range(start, start + count):
        country = COUNTRIES[countries[i % len(countries)]]
        key = hashlib.blake2b(f"{seed}:{country.code}:{i}".encode(), digest_size=10).hexdigest()
        consent_id, profile_id = f"C-{key}", f"P-{key}"
        destinations = rng.sample(DESTINATIONS, rng.choice((1, 1, 2, 2, 3)))
        mobility = sorted({_weighted(rng, MOBILITY) for _ in range(rng.choice((1, 1, 2)))})  # type: ignore[type-var]
        isco = str(_weighted(rng, OCCUPATIONS))

        consent = consent_pb2.Consent(
            subject_ref=hashlib.sha256(f"synthetic-subject:{seed}:{i}".encode()).hexdigest(),
            status=consent_pb2.CONSENT_STATUS_ACTIVE,
            data_categories=[consent_pb2.DATA_CATEGORY_PROFESSIONAL],
            valid_from=valid_from,
            retention_days=365,
        )
        consent.header.record_id, consent.header.origin_participant_id, consent.header.version = (
            consent_id,
            country.spe,
            1,
        )
        consent.header.updated_at.CopyFrom(ts_now)
        for purpose in (
            consent_pb2.PURPOSE_POOL_SEARCH,
            consent_pb2.PURPOSE_MATCHING,
            consent_pb2.PURPOSE_STATISTICS,
        ):
            consent.purposes.add(
                purpose=purpose, notice_version="2026-01", notice_language_code=country.second_languages[0]
            )
        for dest in destinations:
            needs_dpa = country.code in DPA_COUNTRIES or (country.code == "MA" and dest not in EU_EEA)
            consent.recipients.add(
                country_code=dest,
                transfer_basis=consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION
                if needs_dpa
                else consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT,
                basis_reference=f"{country.code}-{dest} labour mobility agreement (synthetic)",
            )
        consent.evidence.channel = consent_pb2.COLLECTION_CHANNEL_COUNSELLOR
        consent.evidence.collected_at.CopyFrom(valid_from)
        consent.evidence.collected_by = f"counsellor-{rng.randrange(1, 400):04d}"
        consent.evidence.notice_sha256 = hashlib.sha256(b"synthetic notice 2026-01").hexdigest()

        profile = profile_pb2.CandidateProfile(
            consent_record_id=consent_id,
            residence_country_code=country.code,
            desired_country_codes=destinations,
            mobility_types=mobility,  # type: ignore[arg-type]
        )
        profile.header.record_id, profile.header.origin_participant_id, profile.header.version = (
            profile_id,
            country.spe,
            1,
        )
        profile.header.updated_at.CopyFrom(ts_now)
        profile.occupations.add(isco08_code=isco)
        for label in rng.sample(
            SKILLS.get(isco[:2], ("teamwork",)), min(2, len(SKILLS.get(isco[:2], ("teamwork",))))
        ):
            profile.skills.add(label=label)
        for code in country.mother_tongues:
            profile.languages.add(language_code=code, level=C.CEFR_LEVEL_NATIVE)
        for code in rng.sample(country.second_languages, rng.randint(1, len(country.second_languages))):
            profile.languages.add(language_code=code, level=rng.choice(LEVELS))
        years = rng.choice((0, 1, 2, 3, 5, 8))
        if years:
            end = now.date() - timedelta(days=rng.randrange(30, 400))
            begin = end - timedelta(days=365 * years)
            profile.work_experiences.add(
                occupation=C.Occupation(isco08_code=isco),
                country_code=country.code,
                period=C.DateRange(start=proto_date(begin), end=proto_date(end)),
            )
        profile.available_from.CopyFrom(proto_date(now.date() + timedelta(days=rng.randrange(0, 180))))

        personal = profile_pb2.PersonalDetails(
            profile_record_id=profile_id,
            consent_record_id=consent_id,
            given_names=rng.choice(country.given),
            family_name=rng.choice(country.family),
            birth_date=proto_date(date(rng.randint(1970, 2006), rng.randint(1, 12), rng.randint(1, 28))),
            nationality_country_codes=[country.code],
        )
        personal.header.record_id, personal.header.origin_participant_id, personal.header.version = (
            f"D-{key}",
            country.spe,
            1,
        )
        personal.header.updated_at.CopyFrom(ts_now)
        personal.contacts.add(type=profile_pb2.CONTACT_TYPE_PHONE, value=_phone(rng, country))
        yield consent, profile, personal


def offers(seed: int, count: int, now: datetime, start: int = 0) -> Iterator[offer_pb2.JobOffer]:
    """``count`` offers from the destination agencies, addressed to some of the partnership's countries."""
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 (reproducible test data, not secrets)
    ts_now = timestamp(now)
    origins = tuple(COUNTRIES)
    for i in range(start, start + count):
        agency, home = AGENCIES[i % len(AGENCIES)]
        work = home or rng.choice(DESTINATIONS)
        isco = str(_weighted(rng, OCCUPATIONS))
        mobility = int(_weighted(rng, MOBILITY))  # type: ignore[call-overload]
        begin = now.date() + timedelta(days=rng.randrange(30, 200))
        offer = offer_pb2.JobOffer(
            title=f"Synthetic offer {isco}",
            positions=rng.choice((1, 2, 5, 10, 20, 40)),
            weekly_hours=rng.choice((35.0, 39.0, 40.0)),
            required_experience_months=rng.choice((0, 0, 6, 12, 24)),
            target_country_codes=rng.sample(origins, rng.randint(1, 3)),
            application_deadline=proto_date(now.date() + timedelta(days=rng.randrange(20, 90))),
        )
        offer.header.record_id, offer.header.origin_participant_id, offer.header.version = (
            f"O-{seed}-{i}",
            agency,
            1,
        )
        offer.header.updated_at.CopyFrom(ts_now)
        offer.employer.name, offer.employer.country_code = (
            f"Employer {rng.randrange(1, 5000):04d} (synthetic)",
            work,
        )
        offer.occupation.isco08_code = isco
        offer.place.country_code = work
        contract = {
            C.MOBILITY_TYPE_SEASONAL: offer_pb2.CONTRACT_TYPE_SEASONAL,
            C.MOBILITY_TYPE_PERMANENT: offer_pb2.CONTRACT_TYPE_PERMANENT,
        }.get(mobility, offer_pb2.CONTRACT_TYPE_FIXED_TERM)
        offer.contract.type, offer.contract.mobility_type = contract, mobility
        offer.contract.start_date.CopyFrom(proto_date(begin))
        if mobility == C.MOBILITY_TYPE_SEASONAL:
            offer.contract.seasonal_window.start.CopyFrom(proto_date(begin))
            offer.contract.seasonal_window.end.CopyFrom(proto_date(begin + timedelta(days=150)))
        skills = SKILLS.get(isco[:2], ())
        for label in rng.sample(skills, min(len(skills), rng.randint(0, 2))):
            offer.required_skills.add(label=label)
        language = {
            "FR": "fr",
            "BE": "fr",
            "ES": "es",
            "IT": "it",
            "PT": "pt",
            "DE": "de",
            "SE": "en",
            "NL": "en",
        }[work]
        if rng.random() < 0.7:
            offer.required_languages.add(
                language_code=language, level=rng.choice((C.CEFR_LEVEL_A1, C.CEFR_LEVEL_A2, C.CEFR_LEVEL_B1))
            )
        yield offer


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
