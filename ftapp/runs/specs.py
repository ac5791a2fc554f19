"""Resolve a validated fine-tuning request into the trainer's job spec (every input a path or id), and read a
stored run's spec back, typed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar, overload

from ftapp.errors import ConflictError
from ftapp.runs.axolotl_request import axolotl_spec
from ftapp.runs.fine_tune_request import FineTuneRequest, config_values, lora_values, training_values
from ftapp.runs.method_request import resolved_settings, reward_specs
from ftapp.settings import Settings
from storage import DatasetRecord, PromptRecord, RunRecord, Transaction
from trainer.protocol import (
    AXOLOTL,
    DDP,
    DataSource,
    EvaluationSpec,
    ExportSpec,
    InferenceSpec,
    ModelSource,
    RunSpec,
    ServeSpec,
    TrainSpec,
    spec_from_dict,
)

S = TypeVar("S", TrainSpec, EvaluationSpec, InferenceSpec, ExportSpec, ServeSpec)
_MESSAGE_CHARS = 300  # of a parse error's text: an imported row's spec is untrusted and may be long


class UnreadableSpecError(ConflictError):
    """A run row whose spec is not this version's run contract: an imported row, or one from an older ftapp."""


def data_source(dataset: DatasetRecord, prompt: PromptRecord | None, **sampling: Any) -> DataSource:
    """Where a trainer reads the dataset and how it renders rows (``sampling``: fraction, train_split, seed)."""
    return DataSource(
        kind=dataset.type,
        path=dataset.location,
        hub_name=dataset.huggingface_name,
        hub_config=dataset.hf_config,
        hub_split=dataset.hf_split or "train",
        format=dataset.format,
        prompt_template=prompt.prompt_template if prompt else None,
        input_template=prompt.input_template if prompt else None,
        completion_template=prompt.completion_template if prompt else None,
        **sampling,
    )


def build_train_spec(
    tx: Transaction,
    settings: Settings,
    request: FineTuneRequest,
    run_id: str,
    device: str,
    resume_from: str | None = None,
    strategy: str = DDP,  # as the preflight decided it for the request's "auto" (ftapp.runs.strategy)
) -> TrainSpec:
    model = tx.models.get(request.base_model_id)
    dataset = tx.datasets.get(request.dataset_id)
    prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None
    init_adapter = tx.adapters.get(request.init_adapter_id) if request.init_adapter_id else None
    assert model is not None and dataset is not None, "validate the request first"
    training = training_values(tx, request)
    data = data_source(dataset, prompt, fraction=request.dataset_fraction, train_split=request.train_test_split, seed=int(training["seed"]))
    spec = TrainSpec(
        run_id=run_id,
        run_dir=str(Path(request.output_dir) / run_id if request.output_dir else settings.runs_dir / run_id),
        method=request.method,
        training_mode=request.training_mode,
        model=ModelSource(source=model.source, architecture=model.architecture),
        data=data,
        adapter_name=request.adapter_name,
        training=training,
        lora=lora_values(tx, request) if request.training_mode != "full" else {},
        bitsandbytes=config_values(tx, request.bitsandbytes_config_id, "bitsandbytes_config") if request.training_mode == "qlora" else None,
        device=device,
        num_processes=request.num_processes,
        strategy=strategy,
        cpu_threads=request.cpu_threads,
        resume_from=resume_from,
        init_adapter=init_adapter.location if init_adapter else None,
        method_settings=resolved_settings(request.method, request.method_settings),
        rewards=reward_specs(request.rewards),
        mlflow_tracking_uri=settings.mlflow_tracking_uri if settings.mlflow_enabled else None,
        mlflow_experiment="ftapp",
    )
    return axolotl_spec(tx, request, spec) if request.framework == AXOLOTL else spec


@overload
def run_spec(run: RunRecord) -> RunSpec: ...


@overload
def run_spec(run: RunRecord, kind: type[S]) -> S: ...


def run_spec(run: RunRecord, kind: type[S] | None = None) -> RunSpec | S:
    """The spec ftapp stored in the run's row at submit, typed (``kind``: the spec class the caller needs).

    Rows are untrusted (an import may bring anything): one that does not parse is an UnreadableSpecError."""
    try:
        spec = spec_from_dict(json.loads(run.spec))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        detail = f"{type(error).__name__}: {error}"[:_MESSAGE_CHARS]
        raise UnreadableSpecError(f"run {run.id} has no readable spec ({detail})") from error
    if kind is not None and not isinstance(spec, kind):
        raise UnreadableSpecError(f"run {run.id} has a {spec.verb} spec, not a {kind.__name__}")
    return spec


def spec_dict(run: RunRecord) -> dict[str, Any]:
    """The run's spec as a JSON object, for views. An unreadable row still shows what it holds (history is kept,
    not launched): its stored object as is, or {} when it holds no object."""
    try:
        return run_spec(run).to_dict()
    except UnreadableSpecError:
        try:
            stored = json.loads(run.spec)
        except (ValueError, TypeError, RecursionError):
            return {}
        return stored if isinstance(stored, dict) else {}
