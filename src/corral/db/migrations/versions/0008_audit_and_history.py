"""audit events, deployment history and rollouts

Every change asked of the control plane, and how it ended; every deployment of each application
(artifact, configuration, who, state, per-server outcome). Existing applications get one history
row for their current deployment, with its state from their instances' reports.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.String(36), nullable=True),
        sa.Column("environment_id", sa.String(36), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("actor_kind", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("actor_name", sa.String(255), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(1024), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    for column in ("organization_id", "environment_id", "time", "actor_name", "action",
                   "resource"):
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.Integer(),
                  sa.ForeignKey("applications.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("rolled_back_to", sa.Integer(), nullable=True),
        sa.UniqueConstraint("application_id", "number"),
    )
    op.create_index("ix_deployments_application_id", "deployments", ["application_id"])
    op.add_column("targets", sa.Column("rollout_policy", sa.JSON(), nullable=True))
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.Integer(),
                  sa.ForeignKey("applications.id", ondelete="CASCADE"), nullable=False),
        sa.Column("deployment_id", sa.Integer(),
                  sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("previous_id", sa.Integer(),
                  sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("desired_status", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("updated", sa.JSON(), nullable=False),
        sa.Column("healthy_since", sa.JSON(), nullable=False),
        sa.Column("batch_started_at", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_rollouts_application_id", "rollouts", ["application_id"])
    op.create_index("ix_rollouts_state", "rollouts", ["state"])
    op.create_table(
        "rollout_pins",
        sa.Column("application_id", sa.Integer(),
                  sa.ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("server_id", sa.Integer(), sa.ForeignKey("servers.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("deployment_id", sa.Integer(),
                  sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=True),
        sa.Column("desired_status", sa.String(16), nullable=True),
    )
    op.create_index("ix_rollout_pins_server_id", "rollout_pins", ["server_id"])
    # what is deployed now has a history of one; it is settled at the next report
    op.execute("INSERT INTO deployments (application_id, number, kind, artifact_id, "
               "configuration, created_by, state, started_at, servers) "
               "SELECT id, deployment_id, 'deploy', artifact_id, configuration, '', "
               "'IN_PROGRESS', time_updated, '[]' FROM applications")


def downgrade() -> None:
    op.drop_table("rollout_pins")
    op.drop_table("rollouts")
    op.execute("ALTER TABLE targets DROP COLUMN rollout_policy")
    op.drop_table("deployments")
    op.drop_table("audit_events")
