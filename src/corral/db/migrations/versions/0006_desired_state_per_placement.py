"""desired state per placement: no stored per-server document, instances hold what was reported

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 16:00:00

What a server should run is now read from the applications that reach it when it is pushed
(ADR 0007), so the per-server document and the per-instance copy of the desired status go.
Existing deployments keep every row that says what is deployed where (applications, instance
rows with their reported status); each server's revision moves on, so that every agent is sent
its state once more after the upgrade.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE on both databases (SQLite 3.35 and later drops a column in place): a
    # batch copy would drop and recreate `servers`, and SQLite's foreign keys would cascade
    # that drop to every instance row
    op.execute("ALTER TABLE servers DROP COLUMN desired_state")
    op.execute("ALTER TABLE server_artifacts DROP COLUMN desired_status")
    op.execute("UPDATE servers SET desired_revision = desired_revision + 1")


def downgrade() -> None:
    """Not possible without the older version's code: its stored documents would have to be
    recomputed, and an empty one would stop every application of the server. Restore the
    database backup taken before the upgrade instead."""
    raise RuntimeError("revision 0006 cannot be downgraded: restore the backup taken before "
                       "upgrading")
