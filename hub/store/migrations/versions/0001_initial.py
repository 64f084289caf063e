"""The store as of the first release: records, indexes, deliveries, directory, audit log.

Revision ID: 0001
Revises: None
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("payload_type", sa.SmallInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("consent_record_id", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_subject", "audit_log", ["origin_id", "consent_record_id"], unique=False)
    op.create_table(
        "delivery_cursors",
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("recipient_id"),
    )
    op.create_table(
        "directory_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "envelopes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("payload_type", sa.SmallInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signer_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at_seconds", sa.BigInteger(), nullable=False),
        sa.Column("signed_at_nanos", sa.Integer(), nullable=False),
        sa.Column("received_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("origin_id", "payload_type", "record_id", "version", name="uq_envelope_version"),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "revoked_certificates",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "used_token_ids",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_table(
        "deliveries",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("envelope_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("routed_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelopes.id"],
        ),
        sa.PrimaryKeyConstraint("seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient_id", "seq"], unique=False)
    op.create_table(
        "records",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("payload_type", sa.SmallInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("envelope_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelopes.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("origin_id", "payload_type", "record_id", name="uq_record"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("public_key_pem", sa.String(length=2000), nullable=False),
        sa.Column("not_before_us", sa.BigInteger(), nullable=False),
        sa.Column("not_after_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("participant_id", "key_id"),
    )
    op.create_table(
        "consent_recipients",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=True),
        sa.Column("country_code", sa.String(length=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index("ix_consent_recipients", "consent_recipients", ["record_pk"], unique=False)
    op.create_table(
        "consents",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("purpose_mask", sa.Integer(), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger(), nullable=False),
        sa.Column("valid_until_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
        sa.UniqueConstraint("origin_id", "record_id", name="uq_consent"),
    )
    op.create_table(
        "offer_targets",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index("ix_offer_targets", "offer_targets", ["record_pk", "country_code"], unique=False)
    op.create_table(
        "offers",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("isco08_code", sa.String(length=4), nullable=False),
        sa.Column("work_country", sa.String(length=2), nullable=False),
        sa.Column("mobility_type", sa.SmallInteger(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
    )
    op.create_index("ix_offers_code", "offers", ["isco08_code"], unique=False)
    op.create_table(
        "profile_destinations",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index(
        "ix_profile_destinations", "profile_destinations", ["record_pk", "country_code"], unique=False
    )
    op.create_table(
        "profile_languages",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("language_code", sa.String(length=3), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index(
        "ix_profile_languages", "profile_languages", ["record_pk", "language_code", "level"], unique=False
    )
    op.create_table(
        "profile_occupations",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("isco08_code", sa.String(length=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index(
        "ix_profile_occupations_code", "profile_occupations", ["isco08_code", "record_pk"], unique=False
    )
    op.create_index("ix_profile_occupations_pk", "profile_occupations", ["record_pk"], unique=False)
    op.create_table(
        "profiles",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("residence_country", sa.String(length=2), nullable=False),
        sa.Column("consent_record_id", sa.String(length=128), nullable=False),
        sa.Column("mobility_mask", sa.Integer(), nullable=False),
        sa.Column("available_from", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
    )
    op.create_index("ix_profiles_consent", "profiles", ["origin_id", "consent_record_id"], unique=False)
    op.create_table(
        "withdrawals",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("withdrawn_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
    )


def downgrade() -> None:
    op.drop_table("withdrawals")
    op.drop_index("ix_profiles_consent", table_name="profiles")
    op.drop_table("profiles")
    op.drop_index("ix_profile_occupations_pk", table_name="profile_occupations")
    op.drop_index("ix_profile_occupations_code", table_name="profile_occupations")
    op.drop_table("profile_occupations")
    op.drop_index("ix_profile_languages", table_name="profile_languages")
    op.drop_table("profile_languages")
    op.drop_index("ix_profile_destinations", table_name="profile_destinations")
    op.drop_table("profile_destinations")
    op.drop_index("ix_offers_code", table_name="offers")
    op.drop_table("offers")
    op.drop_index("ix_offer_targets", table_name="offer_targets")
    op.drop_table("offer_targets")
    op.drop_table("consents")
    op.drop_index("ix_consent_recipients", table_name="consent_recipients")
    op.drop_table("consent_recipients")
    op.drop_table("signing_keys")
    op.drop_table("records")
    op.drop_index("ix_deliveries_recipient", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("used_token_ids")
    op.drop_table("revoked_certificates")
    op.drop_table("participants")
    op.drop_table("envelopes")
    op.drop_table("directory_state")
    op.drop_table("delivery_cursors")
    op.drop_index("ix_audit_subject", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("audit_checkpoints")
