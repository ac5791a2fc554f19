"""Frozen dataclasses: the only shape in which rows leave ``storage``.

Handing out ORM objects would let callers lazy-load after the session closed, or mutate a row
without going through a transaction; plain frozen records make both impossible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    type: str
    huggingface_name: str | None
    location: str | None
    registry_name: str | None
    registry_version: str | None
    architecture: str | None
    model_type: str | None
    num_parameters: int | None
    gated: bool | None
    license: str | None
    license_accepted_at: datetime | None
    description: str
    created_at: datetime

    @property
    def source(self) -> str:
        """What a trainer passes to ``from_pretrained``: a hub id or a local directory."""
        return self.location or self.huggingface_name or ""


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    name: str
    type: str
    huggingface_name: str | None
    hf_config: str | None
    hf_split: str | None
    location: str | None
    source: str | None
    format: str
    features: str
    num_rows: int | None
    description: str
    created_at: datetime
    owner: str | None = None  # a demo visitor; None: the host's, visible to everyone

    @property
    def feature_types(self) -> dict[str, str]:
        return json.loads(self.features)

    @property
    def columns(self) -> list[str]:
        return list(self.feature_types)


@dataclass(frozen=True)
class PromptRecord:
    id: str
    name: str
    type: str
    dataset_id: str
    prompt_template: str
    input_template: str
    completion_template: str
    description: str
    created_at: datetime
    owner: str | None = None  # a demo visitor; None: the host's, visible to everyone


@dataclass(frozen=True)
class ConfigRecord:
    id: str
    type: str
    name: str | None
    description: str
    config: str
    content_hash: str
    model_family: str
    is_default: bool
    created_at: datetime

    @property
    def values(self) -> Any:
        return json.loads(self.config)


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str
    name: str | None
    status: str
    spec: str
    run_dir: str | None
    log_path: str | None
    base_model_id: str | None
    dataset_id: str | None
    prompt_id: str | None
    adapter_id: str | None
    parent_run_id: str | None
    gpus: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pid: int | None
    process_start_time: float | None
    exit_code: int | None
    error_text: str | None
    error_cause: str | None
    mlflow_run_id: str | None
    events_offset: int
    malformed_events: int
    step: int | None
    total_steps: int | None
    eta_s: float | None
    cancel_requested_at: datetime | None
    devices_requested: str
    owner: str | None = None  # a demo visitor; None: the host's, visible to everyone
    kill_after: datetime | None = None  # a cancel's SIGKILL deadline (any supervisor sends it)
    # What its events said (``ftapp.runs.ingest``): payloads are JSON text, untrusted, parsed defensively.
    started_payload: str | None = None
    done_payload: str | None = None
    failure_type: str | None = None
    failure_message: str | None = None
    last_event_at: datetime | None = None  # when the trainer last wrote an event


@dataclass(frozen=True)
class AdapterRecord:
    id: str
    name: str
    type: str
    model_id: str
    location: str | None
    huggingface_name: str | None
    run_id: str | None
    prompt_id: str | None
    base_model_name: str | None
    peft_type: str | None
    description: str
    created_at: datetime
    owner: str | None = None  # a demo visitor; None: the host's, visible to everyone


@dataclass(frozen=True)
class MetricPointRecord:
    id: int
    run_id: str
    step: int
    name: str
    value: float
    time: float


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    run_id: str | None
    kind: str
    path: str
    size_bytes: int | None
    created_at: datetime


@dataclass(frozen=True)
class EvaluationCombinationRecord:
    id: int
    run_id: str
    position: int
    label: str
    model_id: str | None
    adapter_id: str | None


@dataclass(frozen=True)
class EvaluationAnswerRecord:
    id: int
    run_id: str
    position: int
    row_index: int
    input: str
    reference: str
    output: str
    scores: str
    new_tokens: int
    latency_s: float
    log_likelihood: float | None
    reference_tokens: int

    @property
    def score_values(self) -> dict[str, float]:
        return json.loads(self.scores)


@dataclass(frozen=True)
class EvaluationVerdictRecord:
    id: int
    run_id: str
    position: int
    row_index: int
    outcome: str
    verdict_ab: str
    reason_ab: str
    verdict_ba: str
    reason_ba: str


@dataclass(frozen=True)
class EvaluationScoreRecord:
    id: int
    run_id: str
    position: int
    metric: str
    value: float


@dataclass(frozen=True)
class ComparisonVoteRecord:
    id: str
    model_id: str | None
    prompt: str
    settings: str
    candidates: str
    blind: bool
    winner: str
    created_at: datetime


@dataclass(frozen=True)
class TrainingPresetRecord:
    id: str
    name: str
    config_preset: str | None
    settings: str
    created_at: datetime
    owner: str | None = None


def to_record(record_cls: type[R], row: object) -> R:
    return record_cls(**{f.name: getattr(row, f.name) for f in fields(record_cls)})  # type: ignore[arg-type]
