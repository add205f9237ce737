"""services.extras: the provider-specific service fields in one JSON column

Revision ID: 0007_extras
Revises: 0003_rejected

gateway_uuid, trunk_id, first_name, inbound_search and cdr_link each meant
something on one server type only. Their values move into `extras` (key ->
text, unset keys absent), and the columns go: a new provider's fields then
need no migration of their own (docs/internals.md, "Providers as plugins").
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_extras"
down_revision = "0006_fraud"
branch_labels = None
depends_on = None

# The columns as 0001 made them, in the order they were.
COLUMNS = (
    ("gateway_uuid", sa.String(length=36)),
    ("trunk_id", sa.Text()),
    ("first_name", sa.Text()),
    ("inbound_search", sa.Text()),
    ("cdr_link", sa.Text()),
)


def _services(*columns: sa.Column) -> sa.Table:
    return sa.table("services", sa.column("id", sa.Integer()), *columns)


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("extras", sa.JSON(), nullable=True))
    bind = op.get_bind()
    old = _services(*(sa.column(name, kind) for name, kind in COLUMNS))
    new = _services(sa.column("extras", sa.JSON()))
    for row in bind.execute(sa.select(old)).mappings().all():
        extras = {name: row[name] for name, _ in COLUMNS if row[name] is not None}
        bind.execute(
            sa.update(new).where(new.c.id == row["id"]).values(extras=dict(sorted(extras.items())))
        )
    with op.batch_alter_table("services") as batch:
        batch.alter_column("extras", existing_type=sa.JSON(), nullable=False)
        for name, _ in COLUMNS:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    bind = op.get_bind()
    old = _services(*(sa.column(name, kind) for name, kind in COLUMNS))
    new = _services(sa.column("extras", sa.JSON()))
    for row in bind.execute(sa.select(new)).mappings().all():
        extras = row["extras"] or {}
        values = {name: extras.get(name) for name, _ in COLUMNS}
        bind.execute(sa.update(old).where(old.c.id == row["id"]).values(**values))
    with op.batch_alter_table("services") as batch:
        batch.drop_column("extras")
