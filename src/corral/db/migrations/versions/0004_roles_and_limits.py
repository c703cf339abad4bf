"""roles, disabled principals, registration token limits, derived cluster secrets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Everyone who could sign in before roles existed could do everything: keep it so, and let
    # an admin narrow them afterwards.
    for table in ("users", "connected_apps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False,
                                          server_default="admin"))
            batch_op.add_column(sa.Column("enabled", sa.Boolean(), nullable=False,
                                          server_default=sa.true()))
            batch_op.add_column(sa.Column("environment_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("registration_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_uses", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("uses", sa.Integer(), nullable=False, server_default="0"))
    # Cluster secrets are no longer stored: the column now holds a nonce from which the control
    # plane derives the secret with its sealing key. Replace every stored secret.
    clusters = sa.table("clusters", sa.column("id", sa.Integer), sa.column("secret", sa.String))
    conn = op.get_bind()
    for (cluster_id,) in conn.execute(sa.select(clusters.c.id)).all():
        conn.execute(clusters.update().where(clusters.c.id == cluster_id)
                     .values(secret=secrets.token_hex(16)))


def downgrade() -> None:
    with op.batch_alter_table("registration_tokens", schema=None) as batch_op:
        batch_op.drop_column("uses")
        batch_op.drop_column("max_uses")
    for table in ("users", "connected_apps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("environment_ids")
            batch_op.drop_column("enabled")
            batch_op.drop_column("role")
