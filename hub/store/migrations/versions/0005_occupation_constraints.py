"""A match's hard constraints beside each profile occupation.

A match scores every profile of the offer's ISCO-08 sub-major group, and the first thing it did
with each was to read the profile to test the constraints that depend on the profile alone:
its mobility types, when it is available and where it would go. At a million profiles that was
95,000 profile reads for 6,000 candidates, most of a match's second. The three now sit on the
occupation rows the match reads anyway (kept with them in the publication's transaction), so
the group's index range is filtered before any profile is read. ``destinations`` is the
profile's destination countries, comma-separated ("" when it names none).

Backfilled from ``profiles`` and ``profile_destinations``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile_occupations") as batch:
        batch.add_column(sa.Column("mobility_mask", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("available_from", sa.Date(), nullable=True))
        batch.add_column(sa.Column("destinations", sa.String(400), nullable=False, server_default=""))
    occupations = sa.table(
        "profile_occupations",
        sa.column("record_pk"),
        sa.column("mobility_mask"),
        sa.column("available_from"),
        sa.column("destinations"),
    )
    profiles = sa.table(
        "profiles", sa.column("record_pk"), sa.column("mobility_mask"), sa.column("available_from")
    )
    wanted = sa.table("profile_destinations", sa.column("record_pk"), sa.column("country_code"))
    joined = (
        sa.func.string_agg(wanted.c.country_code, ",")
        if op.get_bind().dialect.name == "postgresql"
        else sa.func.group_concat(wanted.c.country_code, ",")
    )

    def of_profile(column: sa.ColumnElement[object]) -> sa.ScalarSelect[object]:
        return sa.select(column).where(profiles.c.record_pk == occupations.c.record_pk).scalar_subquery()

    op.execute(
        occupations.update().values(
            mobility_mask=of_profile(profiles.c.mobility_mask),
            available_from=of_profile(profiles.c.available_from),
            destinations=sa.func.coalesce(
                sa.select(joined).where(wanted.c.record_pk == occupations.c.record_pk).scalar_subquery(), ""
            ),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("profile_occupations") as batch:
        batch.drop_column("destinations")
        batch.drop_column("available_from")
        batch.drop_column("mobility_mask")
