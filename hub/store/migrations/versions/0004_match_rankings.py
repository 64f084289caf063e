"""Match rankings kept per open offer, and records by current envelope.

``match_rankings`` holds the best candidates of an offer by score, computed
without consent (checked on every read); ``match_ranking_state`` says up to
which envelope the ranking saw the pool. ``ix_records_envelope`` finds the
records whose current version came later. Nothing is backfilled: offers are
ranked by the hub after the upgrade, and matched by the full query until then.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_records_envelope", "records", ["envelope_id"])
    op.create_table(
        "match_ranking_state",
        sa.Column("offer_pk", BigId, autoincrement=False, nullable=False),
        sa.Column("offer_revision", sa.BigInteger(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("boundary_score", sa.Integer(), nullable=True),
        sa.Column("boundary_pk", sa.BigInteger(), nullable=True),
        sa.Column("computed_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["offer_pk"], ["records.id"]),
        sa.PrimaryKeyConstraint("offer_pk"),
    )
    op.create_table(
        "match_rankings",
        sa.Column("offer_pk", BigId, nullable=False),
        sa.Column("profile_pk", BigId, nullable=False),
        sa.Column("minus_score", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["offer_pk"], ["records.id"]),
    )
    op.create_index("ix_match_rankings_offer", "match_rankings", ["offer_pk", "minus_score", "profile_pk"])
    op.create_index("ix_match_rankings_profile", "match_rankings", ["profile_pk"])


def downgrade() -> None:
    op.drop_index("ix_match_rankings_profile", table_name="match_rankings")
    op.drop_index("ix_match_rankings_offer", table_name="match_rankings")
    op.drop_table("match_rankings")
    op.drop_table("match_ranking_state")
    op.drop_index("ix_records_envelope", table_name="records")
