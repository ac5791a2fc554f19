"""Evaluation results (combinations, per-row answers, aggregate scores) and side-by-side votes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _run_id(table: str) -> list:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
    ]


def upgrade() -> None:
    op.create_table(
        "evaluation_combinations",
        *_run_id("evaluation_combinations"),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=True),
        sa.Column("adapter_id", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_evaluation_combinations_model_id_models", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name="fk_evaluation_combinations_adapter_id_adapters", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("run_id", "position", name="uq_evaluation_combinations_run_id_position"),
    )
    op.create_table(
        "evaluation_answers",
        *_run_id("evaluation_answers"),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("scores", sa.Text(), nullable=False),
        sa.Column("new_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("log_likelihood", sa.Float(), nullable=True),
        sa.Column("reference_tokens", sa.Integer(), nullable=False),
        sa.UniqueConstraint("run_id", "position", "row_index", name="uq_evaluation_answers_run_id_position_row_index"),
    )
    op.create_table(
        "evaluation_scores",
        *_run_id("evaluation_scores"),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "position", "metric", name="uq_evaluation_scores_run_id_position_metric"),
    )
    for table in ("evaluation_combinations", "evaluation_answers", "evaluation_scores"):
        op.create_index(f"ix_{table}_run_id", table, ["run_id"])
    op.create_table(
        "comparison_votes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("candidates", sa.Text(), nullable=False),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("winner", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_comparison_votes_model_id_models", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_comparison_votes"),
    )


def downgrade() -> None:
    for table in ("comparison_votes", "evaluation_scores", "evaluation_answers", "evaluation_combinations"):
        op.drop_table(table)
