"""Run progress and cancellation: the latest step, total steps and ETA for list views, and when a
cancel was asked for (so a run that exits after our SIGTERM is 'cancelled' even across an app restart).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("total_steps", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("eta_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("devices_requested", sa.String(64), nullable=False, server_default="auto"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in ("devices_requested", "cancel_requested_at", "eta_s", "total_steps", "step"):
            batch.drop_column(column)
