"""Training presets: a Train form saved under a name, as the fine-tuning request it builds.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_presets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config_preset", sa.String(200), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_presets"),
        sa.UniqueConstraint("name", name="uq_training_presets_name"),
    )
    op.create_index("ix_training_presets_owner", "training_presets", ["owner"])


def downgrade() -> None:
    op.drop_table("training_presets")
