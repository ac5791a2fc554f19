"""SQLAlchemy tables. Alembic migrations in ``storage/migrations`` create exactly these.

Names are unique in the database itself (not only in code), ids are UUID strings, and every
reference is a real foreign key so that SQLite (``foreign_keys=ON``) refuses dangling rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import UTCDateTime, utc_now

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    huggingface_name: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(Text)
    registry_name: Mapped[str | None] = mapped_column(String(200))
    registry_version: Mapped[str | None] = mapped_column(String(32))
    architecture: Mapped[str | None] = mapped_column(String(100))
    model_type: Mapped[str | None] = mapped_column(String(64))
    num_parameters: Mapped[int | None] = mapped_column(Integer)
    gated: Mapped[bool | None] = mapped_column(Boolean)
    license: Mapped[str | None] = mapped_column(String(100))
    license_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    huggingface_name: Mapped[str | None] = mapped_column(String(200))
    hf_config: Mapped[str | None] = mapped_column(String(200))
    hf_split: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(32), default="plain")
    features: Mapped[str] = mapped_column(Text, default="{}")
    num_rows: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The visitor of a public demo who made the row; NULL: the host's, visible to everyone.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)


class PromptRow(Base):
    __tablename__ = "prompts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32), default="in_place")
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    prompt_template: Mapped[str] = mapped_column(Text)
    input_template: Mapped[str] = mapped_column(Text)
    completion_template: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The visitor of a public demo who made the row; NULL: the host's, visible to everyone.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)


class ConfigRow(Base):
    __tablename__ = "configs"
    __table_args__ = (UniqueConstraint("type", "model_family", "content_hash"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    model_family: Mapped[str] = mapped_column(String(100), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class RunRow(Base):
    """A supervised subprocess: fine-tuning, evaluation, export or serving."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    spec: Mapped[str] = mapped_column(Text, default="{}")
    run_dir: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    base_model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    prompt_id: Mapped[str | None] = mapped_column(ForeignKey("prompts.id", ondelete="SET NULL"))
    adapter_id: Mapped[str | None] = mapped_column(ForeignKey("adapters.id", ondelete="SET NULL", use_alter=True))
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    gpus: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pid: Mapped[int | None] = mapped_column(Integer)
    process_start_time: Mapped[float | None] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error_text: Mapped[str | None] = mapped_column(Text)
    error_cause: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    events_offset: Mapped[int] = mapped_column(Integer, default=0)
    malformed_events: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    eta_s: Mapped[float | None] = mapped_column(Float)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a cancelled run that is still alive gets SIGKILL (set with the SIGTERM; any supervisor honours it).
    kill_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    devices_requested: Mapped[str] = mapped_column(String(64), default="auto", server_default="auto")
    # The visitor of a public demo who made the row; NULL: the host's, visible to everyone.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    # How the run started and ended, as its events said (ingested, so nobody reads events.jsonl again): the
    # ``started`` and ``done`` payloads (JSON objects), the ``failed`` event's error type and message, and when
    # the trainer last wrote an event. Untrusted text: readers parse the payloads defensively.
    started_payload: Mapped[str | None] = mapped_column(Text)
    done_payload: Mapped[str | None] = mapped_column(Text)
    failure_type: Mapped[str | None] = mapped_column(String(200))
    failure_message: Mapped[str | None] = mapped_column(Text)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdapterRow(Base):
    __tablename__ = "adapters"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"))
    location: Mapped[str | None] = mapped_column(Text)
    huggingface_name: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    prompt_id: Mapped[str | None] = mapped_column(ForeignKey("prompts.id", ondelete="SET NULL"))
    base_model_name: Mapped[str | None] = mapped_column(Text)
    peft_type: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The visitor of a public demo who made the row; NULL: the host's, visible to everyone.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)


class MetricPointRow(Base):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("run_id", "name", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class EvaluationCombinationRow(Base):
    """One column of an evaluation run: a model, with an adapter or alone. Position 1 is the baseline."""

    __tablename__ = "evaluation_combinations"
    __table_args__ = (UniqueConstraint("run_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    adapter_id: Mapped[str | None] = mapped_column(ForeignKey("adapters.id", ondelete="SET NULL"))


class EvaluationAnswerRow(Base):
    """One combination's answer to one dataset row, with its per-row scores (JSON)."""

    __tablename__ = "evaluation_answers"
    __table_args__ = (UniqueConstraint("run_id", "position", "row_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    row_index: Mapped[int] = mapped_column(Integer)
    input: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    scores: Mapped[str] = mapped_column(Text, default="{}")
    new_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    log_likelihood: Mapped[float | None] = mapped_column(Float)
    reference_tokens: Mapped[int] = mapped_column(Integer, default=0)


class EvaluationScoreRow(Base):
    """One aggregate metric of one combination (deltas against the baseline are computed on read)."""

    __tablename__ = "evaluation_scores"
    __table_args__ = (UniqueConstraint("run_id", "position", "metric"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class EvaluationVerdictRow(Base):
    """An LLM judge's verdicts on one row: combination ``position``'s answer against #1's, judged in both orders."""

    __tablename__ = "evaluation_verdicts"
    __table_args__ = (UniqueConstraint("run_id", "position", "row_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    row_index: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(8))  # win | tie | loss for the combination; "" when neither order had a verdict
    verdict_ab: Mapped[str] = mapped_column(String(8))  # #1's answer shown as A: A | B | tie | ""
    reason_ab: Mapped[str] = mapped_column(Text, default="")
    verdict_ba: Mapped[str] = mapped_column(String(8))  # the combination's answer shown as A
    reason_ba: Mapped[str] = mapped_column(Text, default="")


class ComparisonVoteRow(Base):
    """A side-by-side comparison a person judged: what was shown (in which order) and which answer won."""

    __tablename__ = "comparison_votes"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    prompt: Mapped[str] = mapped_column(Text)
    settings: Mapped[str] = mapped_column(Text, default="{}")  # generation settings and seed, JSON
    candidates: Mapped[str] = mapped_column(Text, default="[]")  # [{label, adapter_id, output}] in shown order, JSON
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    winner: Mapped[str] = mapped_column(String(200))  # a candidate's label, or "tie"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class TrainingPresetRow(Base):
    """A Train form saved under a name: the fine-tuning request it builds, without the adapter's name (JSON)."""

    __tablename__ = "training_presets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The shipped config preset the request's configs come from (None: configs chosen by id on the command line).
    config_preset: Mapped[str | None] = mapped_column(String(200))
    settings: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The visitor of a public demo who made the row; NULL: the host's, visible to everyone.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
