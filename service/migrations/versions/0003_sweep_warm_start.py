"""sweeps.warm_start: what a warm start (`prior_sweeps`) taught the sweep's method, and skipped

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 13:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warm_start", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("warm_start")
