"""An LLM judge's per-row verdicts: each combination's answer against #1's, judged in both orders, with reasons.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("verdict_ab", sa.String(8), nullable=False),
        sa.Column("reason_ab", sa.Text(), nullable=False),
        sa.Column("verdict_ba", sa.String(8), nullable=False),
        sa.Column("reason_ba", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_evaluation_verdicts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluation_verdicts"),
        sa.UniqueConstraint("run_id", "position", "row_index", name="uq_evaluation_verdicts_run_id_position_row_index"),
    )
    op.create_index("ix_evaluation_verdicts_run_id", "evaluation_verdicts", ["run_id"])


def downgrade() -> None:
    op.drop_table("evaluation_verdicts")
