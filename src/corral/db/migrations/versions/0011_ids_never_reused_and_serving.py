"""ids are never reused; each instance says whether a deployment of it serves

On SQLite, a table without AUTOINCREMENT gives a new row the highest id plus one, so deleting
the newest application (or target) handed its id to the next one. The tables whose ids are shown
or referred to are rebuilt with AUTOINCREMENT (their rows, ids and references unchanged; the
upgrade runs with foreign keys off, `corral.db.migrate`). PostgreSQL's sequences never go back,
so there only the new column is added.

`server_artifacts.serving`: a deployment of the application passed its checks and runs on that
server (the current one, or an earlier one still running while the next is fetched), so a
redeploying application is not read as UNDEPLOYED (ADR 0006). Existing rows serve when their
last report was STARTED.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NEVER_REUSED = ("targets", "artifacts", "applications", "server_artifacts", "target_components",
                "audit_events", "deployments", "rollouts", "alert_events", "alert_deliveries")


def upgrade() -> None:
    with op.batch_alter_table("server_artifacts") as batch:
        batch.add_column(sa.Column("serving", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.execute("UPDATE server_artifacts SET serving = (last_reported_status = 'STARTED')")
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in NEVER_REUSED:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}):
            pass  # the copy keeps every id; the next one continues after the highest


def downgrade() -> None:
    with op.batch_alter_table("server_artifacts") as batch:
        batch.drop_column("serving")
