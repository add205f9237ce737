"""server_pulls and status_alerts: what `voipctl status` needs beyond job_runs

Revision ID: 0004_status
Revises: 0003_rejected

server_pulls: per server, the last pull-cdrs run that read it without an error
(a server that answers with no new calls moves no watermark) and the count of
calls stored from it, kept as a counter. status_alerts: the problems
`status --notify` has mailed, so each is mailed once when it appears and once
when it clears.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_status"
down_revision = "0003_rejected"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_pulls",
        sa.Column("server", sa.String(length=100), nullable=False),
        sa.Column("last_run_at", sa.BigInteger(), nullable=True),
        sa.Column("last_success_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("cdrs_stored_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("server", name=op.f("pk_server_pulls")),
    )
    op.create_table(
        "status_alerts",
        sa.Column("problem", sa.String(length=200), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("problem", name=op.f("pk_status_alerts")),
    )


def downgrade() -> None:
    op.drop_table("status_alerts")
    op.drop_table("server_pulls")
