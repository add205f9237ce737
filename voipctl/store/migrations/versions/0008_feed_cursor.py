"""pull_watermarks.cursor: where a file feed's last read stopped

Revision ID: 0008_feed_cursor
Revises: 0007_extras

An adapter that reads a growing file (Asterisk's Master.csv) goes on from where
the last run stopped: its position (the adapter's own text, e.g. the file's
inode and byte offset) is kept with the feed's watermark and written in the
transaction that stores the calls read up to it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_feed_cursor"
down_revision = "0007_extras"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pull_watermarks") as batch:
        batch.add_column(sa.Column("cursor", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pull_watermarks") as batch:
        batch.drop_column("cursor")
