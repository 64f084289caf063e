"""Matching facts of profiles (skills, months of experience) and the mobility cycle.

Profiles stored before this revision have no matching facts until their origin
publishes a new version: they match on occupation, languages, destinations,
mobility and availability, with no skill and no experience counted.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mobility_cycles",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("origin_id", sa.String(length=64), nullable=False),
        sa.Column("application_id", sa.String(length=128), nullable=False),
        sa.Column("profile_record_id", sa.String(length=128), nullable=False),
        sa.Column("offer_origin_id", sa.String(length=64), nullable=False),
        sa.Column("offer_record_id", sa.String(length=128), nullable=False),
        sa.Column("origin_country", sa.String(length=2), nullable=False),
        sa.Column("destination_country", sa.String(length=2), nullable=False),
        sa.Column("mobility_type", sa.SmallInteger(), nullable=False),
        sa.Column("isco08_code", sa.String(length=4), nullable=False),
        sa.Column("consent_record_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("origin_id", "application_id", name="uq_mobility_cycles"),
    )
    op.create_index(
        "ix_mobility_cycles_offer", "mobility_cycles", ["offer_origin_id", "offer_record_id"], unique=False
    )
    op.create_index(
        "ix_mobility_cycles_profile", "mobility_cycles", ["origin_id", "profile_record_id"], unique=False
    )
    op.create_table(
        "mobility_events",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("cycle_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("reintegration_outcome", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["mobility_cycles.id"],
        ),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
    )
    op.create_index("ix_mobility_events_cycle", "mobility_events", ["cycle_id", "record_pk"], unique=False)
    op.create_table(
        "profile_experience",
        sa.Column(
            "record_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_pk"),
    )
    op.create_table(
        "profile_skills",
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("skill", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["records.id"],
        ),
    )
    op.create_index("ix_profile_skills", "profile_skills", ["record_pk", "skill"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_profile_skills", table_name="profile_skills")
    op.drop_table("profile_skills")
    op.drop_table("profile_experience")
    op.drop_index("ix_mobility_events_cycle", table_name="mobility_events")
    op.drop_table("mobility_events")
    op.drop_index("ix_mobility_cycles_profile", table_name="mobility_cycles")
    op.drop_index("ix_mobility_cycles_offer", table_name="mobility_cycles")
    op.drop_table("mobility_cycles")
