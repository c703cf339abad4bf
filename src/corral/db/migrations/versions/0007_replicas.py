"""replicas: shared keys, where each replica's gateway is, artifacts in the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 18:30:00

Several `corral serve` processes on one database share the CA and sealing keys (sealed with
the master key), know which replica holds each agent, and may keep artifacts in the database
(`CORRAL_ARTIFACT_STORE=database`: content-addressed chunks).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_plane_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("gateway_url", sa.String(255), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
    )
    op.add_column("servers", sa.Column("replica_id", sa.String(36), nullable=True))
    op.create_table(
        "artifact_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # artifacts are zips, already compressed: storing chunks out of line without another
        # compression pass triples the write speed
        op.execute("ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("artifact_chunks")
    op.drop_table("artifact_blobs")
    op.execute("ALTER TABLE servers DROP COLUMN replica_id")
    op.drop_table("replicas")
    op.drop_table("control_plane_secrets")
