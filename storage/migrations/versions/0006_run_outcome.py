"""How a run started and ended, in its row: the ``started``/``done`` payloads, the failure, the last event's time.

Services read these from SQLite instead of re-reading ``events.jsonl`` (serving's URL, an export's result, a
compare worker's readiness), and the supervisor decides a run's final status from its row. Rows of runs
ingested before this revision are NULL here; ``ftapp`` fills them from their events file once, on open.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("started_payload", sa.Text(), nullable=True))
        batch.add_column(sa.Column("done_payload", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failure_type", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("failure_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_event_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in ("last_event_at", "failure_message", "failure_type", "done_payload", "started_payload"):
            batch.drop_column(column)
