"""certificate renewal and CA rotation

Per server: when its certificate was issued, the CA that signed its certificate, the certificate issued by a renewal that the
agent has not used yet, when a renewal was asked for, and the last renewal problem.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("certificate_issued_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("certificate_issuer", sa.String(80), nullable=True))
        batch.add_column(sa.Column("next_certificate_serial", sa.String(64), nullable=True))
        batch.add_column(sa.Column("next_certificate_expires_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("renewal_due", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("certificate_problem", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        for column in ("certificate_problem", "renewal_due", "next_certificate_expires_at",
                       "next_certificate_serial", "certificate_issuer",
                       "certificate_issued_at"):
            batch.drop_column(column)
