"""topup_attempts and the auto top-up latch: Auto VoIP Top-Up (docs/topup.md)

Revision ID: 0005_topup
Revises: 0003_rejected

One row per charge voipctl decided to take, written (as `pending`) and
committed before any money moves, unique by reference: a run killed mid-charge
leaves the row for the next run to resolve under the same reference.
`day` is the date in the client's time zone, for the daily cap. `step` and
`external_id` follow the WHMCS flow (the invoice, its capture, the credit).
`clients.auto_topup_latched` is the once-per-crossing latch.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_topup"
down_revision = "0004_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topup_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("step", sa.String(length=12), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topup_attempts")),
        sa.UniqueConstraint("reference", name=op.f("uq_topup_attempts_reference")),
    )
    op.create_index(
        op.f("ix_topup_attempts_client_id"), "topup_attempts", ["client_id"], unique=False
    )
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("auto_topup_latched", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("auto_topup_latched")
    op.drop_index(op.f("ix_topup_attempts_client_id"), table_name="topup_attempts")
    op.drop_table("topup_attempts")
