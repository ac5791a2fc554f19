"""The cancel's kill deadline: after ``kill_after`` any supervisor sends SIGKILL to a run that ignored SIGTERM.

It lived in the memory of the process that cancelled, so a ``runs cancel`` from the CLI of a hung trainer
that the app's supervisor watched was never escalated; in the database every supervisor honours it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kill_after", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("kill_after")
