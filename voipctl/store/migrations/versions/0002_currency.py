"""products.currency: the currency a product's deck is priced in

Revision ID: 0002_currency
Revises: 0001

NULL (every product made before this column) reads as the configuration's
`[billing] currency`; `voipctl product add` writes the currency explicitly.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_currency"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("currency", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("currency")
