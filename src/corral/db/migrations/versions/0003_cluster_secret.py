"""cluster secret

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:50:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.String(length=64), nullable=True))
    clusters = sa.table("clusters", sa.column("id", sa.Integer), sa.column("secret", sa.String))
    conn = op.get_bind()
    for (cluster_id,) in conn.execute(sa.select(clusters.c.id)).all():
        conn.execute(clusters.update().where(clusters.c.id == cluster_id)
                     .values(secret=secrets.token_hex(32)))
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("secret")
