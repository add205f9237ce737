"""fraud: per-product and per-client overrides of the fraud guard's limits

Revision ID: 0006_fraud
Revises: 0003_rejected

One JSON column on products and on clients holding the `[fraud]` limits set for
them (docs/fraud.md): a key present overrides the configuration, "" (stored as
null) disables that limit, a key absent inherits. Validated by the same model as
the configuration when written and when read.

`ix_cdrs_client_start` gains the cost column, so the guard's sums per client
over the last hour, day and 30 days read the index alone (one rebuild of the
index on upgrade).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_fraud"
down_revision = "0005_topup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("fraud", sa.JSON(), nullable=True))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("fraud", sa.JSON(), nullable=True))
    op.drop_index("ix_cdrs_client_start", table_name="cdrs")
    op.create_index("ix_cdrs_client_start", "cdrs", ["client_id", "start", "id", "cost"])


def downgrade() -> None:
    op.drop_index("ix_cdrs_client_start", table_name="cdrs")
    op.create_index("ix_cdrs_client_start", "cdrs", ["client_id", "start"])
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("fraud")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("fraud")
