"""The first tables: resources, runs, metric points and artifacts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.String(36), nullable=False)


def _created() -> sa.Column:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "models",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("huggingface_name", sa.String(200), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("registry_name", sa.String(200), nullable=True),
        sa.Column("registry_version", sa.String(32), nullable=True),
        sa.Column("architecture", sa.String(100), nullable=True),
        sa.Column("model_type", sa.String(64), nullable=True),
        sa.Column("num_parameters", sa.Integer(), nullable=True),
        sa.Column("gated", sa.Boolean(), nullable=True),
        sa.Column("license", sa.String(100), nullable=True),
        sa.Column("license_accepted_at", UTCDateTime(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "datasets",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("huggingface_name", sa.String(200), nullable=True),
        sa.Column("hf_config", sa.String(200), nullable=True),
        sa.Column("hf_split", sa.String(100), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("num_rows", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "prompts",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("prompt_template", sa.Text(), nullable=False),
        sa.Column("input_template", sa.Text(), nullable=False),
        sa.Column("completion_template", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_prompts_dataset_id_datasets", ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name="pk_prompts"),
        sa.UniqueConstraint("name", name="uq_prompts_name"),
    )
    op.create_table(
        "configs",
        _id(),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model_family", sa.String(100), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_configs"),
        sa.UniqueConstraint("type", "model_family", "content_hash", name="uq_configs_type_model_family_content_hash"),
    )
    # runs and adapters refer to each other (an evaluation reads an adapter; a fine-tune makes one).
    # SQLite accepts a foreign key to a table created later, so both are declared inline.
    op.create_table(
        "runs",
        _id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("base_model_id", sa.String(36), nullable=True),
        sa.Column("dataset_id", sa.String(36), nullable=True),
        sa.Column("prompt_id", sa.String(36), nullable=True),
        sa.Column("adapter_id", sa.String(36), nullable=True),
        sa.Column("parent_run_id", sa.String(36), nullable=True),
        sa.Column("gpus", sa.String(64), nullable=False),
        _created(),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process_start_time", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column("error_cause", sa.String(64), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("events_offset", sa.Integer(), nullable=False),
        sa.Column("malformed_events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["base_model_id"], ["models.id"], name="fk_runs_base_model_id_models", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_runs_dataset_id_datasets", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_runs_prompt_id_prompts", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"], name="fk_runs_adapter_id_adapters", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.id"], name="fk_runs_parent_run_id_runs", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "adapters",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("huggingface_name", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("prompt_id", sa.String(36), nullable=True),
        sa.Column("base_model_name", sa.Text(), nullable=True),
        sa.Column("peft_type", sa.String(32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_adapters_model_id_models", ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_adapters_run_id_runs", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_adapters_prompt_id_prompts", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_adapters"),
        sa.UniqueConstraint("name", name="uq_adapters_name"),
    )
    op.create_table(
        "metric_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_points_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_metric_points"),
        sa.UniqueConstraint("run_id", "name", "step", name="uq_metric_points_run_id_name_step"),
    )
    op.create_index("ix_metric_points_run_id", "metric_points", ["run_id"])
    op.create_table(
        "artifacts",
        _id(),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_run_id", "artifacts", ["run_id"])


def downgrade() -> None:
    for table in ("artifacts", "metric_points", "adapters", "runs", "configs", "prompts", "datasets", "models"):
        op.drop_table(table)
