"""rejected_records: provider records pull-cdrs set aside instead of stopping

Revision ID: 0003_rejected
Revises: 0002_currency

One row per record that could not be read or stored, unique per server, pull
scope and locator, so a later run that reads the overlap window again does not
set it aside twice. `resolved_at` is set by `pull-cdrs --retry-rejected`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_rejected"
down_revision = "0002_currency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejected_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("locator", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
        sa.UniqueConstraint(
            "server",
            "scope",
            "locator",
            name=op.f("uq_rejected_records_server_scope_locator"),
        ),
    )


def downgrade() -> None:
    op.drop_table("rejected_records")
