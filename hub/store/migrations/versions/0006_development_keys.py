"""Signing keys marked development.

A key imported from a development registry (``spe-hub dev-pki`` marks each of
its keys, and the registry as a whole) keeps the mark in the store, so that a
production hub started on a database a development hub filled refuses to start
rather than trust the development PKI's keys (docs/trust.md). Existing keys are
not marked: the production check also compares them with the local development
PKI's files.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(sa.Column("development", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("development")
