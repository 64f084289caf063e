"""Tables of the hub's store (SQLAlchemy Core), identical on SQLite and PostgreSQL.

- ``envelopes``: every version of every record, as the exact signed bytes.
- ``records``: the current version of each record (origin, type, record id).
- ``profiles`` / ``offers`` / ``consents`` and their child tables: what
  searches filter on, extracted from the current version; rebuilt on each
  new version.
- ``deliveries`` / ``delivery_cursors``: what is routed to whom, and how far
  each recipient has acknowledged.

Instants are integer microseconds since the Unix epoch (UTC), portable and
cheap to compare; civil dates are DATE.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    false,
    func,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer, "sqlite")

envelopes = Table(
    "envelopes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("origin_id", String(64), nullable=False),
    Column("payload_type", SmallInteger, nullable=False),
    Column("record_id", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_sha256", LargeBinary(32), nullable=False),
    Column("signer_id", String(64), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("signed_at_seconds", BigInteger, nullable=False),
    Column("signed_at_nanos", Integer, nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
    UniqueConstraint("origin_id", "payload_type", "record_id", "version", name="uq_envelope_version"),
)

records = Table(
    "records",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("origin_id", String(64), nullable=False),
    Column("payload_type", SmallInteger, nullable=False),
    Column("record_id", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("envelope_id", BigId, ForeignKey("envelopes.id"), nullable=False),
    UniqueConstraint("origin_id", "payload_type", "record_id", name="uq_record"),
    # Records whose current version came after a given envelope: what changed since a match ranking.
    Index("ix_records_envelope", "envelope_id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("origin_id", String(64), nullable=False),
    Column("residence_country", String(2), nullable=False),
    Column("consent_record_id", String(128), nullable=False),
    Column("mobility_mask", Integer, nullable=False),
    Column("available_from", Date, nullable=True),
    Index("ix_profiles_consent", "origin_id", "consent_record_id"),
)

profile_occupations = Table(
    "profile_occupations",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("isco08_code", String(4), nullable=False),
    # The profile's own hard constraints of a match, beside each occupation (revision 0005): a
    # match filters its group's members on them before reading any profile.
    Column("mobility_mask", Integer, nullable=False, server_default="0"),
    Column("available_from", Date, nullable=True),
    Column("destinations", String(400), nullable=False, server_default=""),  # "ES,FR"; "": none named
    Index("ix_profile_occupations_code", "isco08_code", "record_pk"),
    Index("ix_profile_occupations_pk", "record_pk"),
)
# The ISCO-08 groups above the unit group (major, sub-major, minor: the code's first 1, 2 or 3
# digits), each with the profiles in record order: a search or a match by group reads its members
# from one index range, in order, instead of testing every profile of the pool.
for _digits in (1, 2, 3):
    Index(
        f"ix_profile_occupations_group{_digits}",
        func.substr(profile_occupations.c.isco08_code, 1, _digits),
        profile_occupations.c.record_pk,
    )

profile_languages = Table(
    "profile_languages",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("language_code", String(3), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Index("ix_profile_languages", "record_pk", "language_code", "level"),
)

profile_destinations = Table(
    "profile_destinations",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("country_code", String(2), nullable=False),
    Index("ix_profile_destinations", "record_pk", "country_code"),
)

profile_skills = Table(
    "profile_skills",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    # An ESCO skill URI, or "label:" and the folded label (hub.domain.records.skill_key).
    Column("skill", String(300), nullable=False),
    Index("ix_profile_skills", "record_pk", "skill"),
    # Who holds an offer's required skills, for matching.
    Index("ix_profile_skills_skill", "skill", "record_pk"),
)

profile_experience = Table(
    "profile_experience",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("months", Integer, nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("isco08_code", String(4), nullable=False),
    Column("work_country", String(2), nullable=False),
    Column("mobility_type", SmallInteger, nullable=False),
    Column("start_date", Date, nullable=True),
    Column("deadline", Date, nullable=True),
    Index("ix_offers_code", "isco08_code"),
)

offer_targets = Table(
    "offer_targets",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("country_code", String(2), nullable=False),
    Index("ix_offer_targets", "record_pk", "country_code"),
)

consents = Table(
    "consents",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("origin_id", String(64), nullable=False),
    Column("record_id", String(128), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("purpose_mask", Integer, nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=False),
    UniqueConstraint("origin_id", "record_id", name="uq_consent"),
)

consent_recipients = Table(
    "consent_recipients",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("participant_id", String(64), nullable=True),
    Column("country_code", String(2), nullable=True),
    Index("ix_consent_recipients", "record_pk"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("recipient_id", String(64), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("envelope_id", BigId, ForeignKey("envelopes.id"), nullable=False),
    Column("routed_at_us", BigInteger, nullable=False),
    Index("ix_deliveries_recipient", "recipient_id", "seq"),
    sqlite_autoincrement=True,
)

delivery_cursors = Table(
    "delivery_cursors",
    metadata,
    Column("recipient_id", String(64), primary_key=True),
    Column("acked_seq", BigInteger, nullable=False),
)

# Index tables rebuilt when a new version of a record replaces the current one.
# -- the mobility cycle: one row per cycle, one per event (events are records) -----

mobility_cycles = Table(
    "mobility_cycles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The origin SPE that opened the cycle (and published the profile), and its id for it.
    Column("origin_id", String(64), nullable=False),
    Column("application_id", String(128), nullable=False),
    Column("profile_record_id", String(128), nullable=False),
    Column("offer_origin_id", String(64), nullable=False),
    Column("offer_record_id", String(128), nullable=False),
    # The corridor, fixed at the application, for statistics: the candidate's residence, the
    # offer's work country, mobility type and ISCO-08 unit group, and the candidate's consent.
    Column("origin_country", String(2), nullable=False),
    Column("destination_country", String(2), nullable=False),
    Column("mobility_type", SmallInteger, nullable=False),
    Column("isco08_code", String(4), nullable=False),
    Column("consent_record_id", String(128), nullable=False),
    # The last step recorded (spehub.v1.MobilityEventType).
    Column("state", SmallInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("origin_id", "application_id", name="uq_mobility_cycles"),
    Index("ix_mobility_cycles_offer", "offer_origin_id", "offer_record_id"),
    Index("ix_mobility_cycles_profile", "origin_id", "profile_record_id"),
)

mobility_events = Table(
    "mobility_events",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("cycle_id", BigId, ForeignKey("mobility_cycles.id"), nullable=False),
    Column("type", SmallInteger, nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("reintegration_outcome", SmallInteger, nullable=False),
    Index("ix_mobility_events_cycle", "cycle_id", "record_pk"),
)

INDEX_CHILDREN = (
    profile_occupations,
    profile_languages,
    profile_destinations,
    profile_skills,
    profile_experience,
    offer_targets,
    consent_recipients,
)
INDEX_MAIN = (profiles, offers, consents)

# -- match rankings: the best candidates of an open offer, kept between calls --
# Computed from the profiles' own facts only (occupation, languages, destinations,
# mobility, availability, skills, experience), never from consent, which is
# checked when the ranking is read. hub.store.matching.MatchingQueries.ranked_candidates
# says why what is kept stays exact.

match_ranking_state = Table(
    "match_ranking_state",
    metadata,
    Column("offer_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    # The offer's envelope when ranked (a new version makes the ranking stale).
    Column("offer_revision", BigInteger, nullable=False),
    # Every envelope up to this id was stored when the ranking was computed; profiles whose
    # current version is newer are scored when the ranking is read.
    Column("watermark", BigInteger, nullable=False),
    # The (score, profile) of the last candidate kept; NULL when every candidate was kept.
    Column("boundary_score", Integer, nullable=True),
    Column("boundary_pk", BigInteger, nullable=True),
    Column("computed_at_us", BigInteger, nullable=False),
)

match_rankings = Table(
    "match_rankings",
    metadata,
    Column("offer_pk", BigId, ForeignKey("records.id"), nullable=False),
    Column("profile_pk", BigId, nullable=False),
    # Minus the score: ascending order is a match's order (best first, then by record), so one plain
    # index serves a page and stops after its last row, on every database.
    Column("minus_score", Integer, nullable=False),
    Index("ix_match_rankings_offer", "offer_pk", "minus_score", "profile_pk"),
    # A profile's entries go with its index rows (new version, withdrawal, erasure).
    Index("ix_match_rankings_profile", "profile_pk"),
)

# -- directory: participants, their keys, revoked certificates ---------------

participants = Table(
    "participants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("country_code", String(2), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("participant_id", String(64), ForeignKey("participants.id"), primary_key=True),
    Column("key_id", String(128), primary_key=True),
    Column("public_key_pem", String(2000), nullable=False),
    Column("not_before_us", BigInteger, nullable=False),
    Column("not_after_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
    # Imported from a development registry: a production hub refuses to start while one is here.
    Column("development", Boolean, nullable=False, server_default=false()),
)

revoked_certificates = Table(
    "revoked_certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("revoked_at_us", BigInteger, nullable=False),
)

# One row: bumped by every directory change, so each hub process notices on its next call.
directory_state = Table(
    "directory_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# Single-use token ids (admin tokens), kept until the token expires.
used_token_ids = Table(
    "used_token_ids",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at_us", BigInteger, nullable=False),
)

withdrawals = Table(
    "withdrawals",
    metadata,
    Column("record_pk", BigId, ForeignKey("records.id"), primary_key=True, autoincrement=False),
    Column("withdrawn_at_us", BigInteger, nullable=False),
)

# -- audit log: hash-chained, appended in the transaction of the act it records --

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("origin_id", String(64), nullable=False),
    Column("payload_type", SmallInteger, nullable=False),
    Column("record_id", String(128), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("consent_record_id", String(128), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index("ix_audit_subject", "origin_id", "consent_record_id"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)
