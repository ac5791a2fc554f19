"""Resolve a validated fine-tuning request into the trainer's job spec (every input a path or id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftapp.runs.fine_tune_request import FineTuneRequest, config_values, lora_values, training_values
from ftapp.runs.method_request import resolved_settings, reward_specs
from ftapp.settings import Settings
from storage import DatasetRecord, PromptRecord, Transaction
from trainer.protocol import DataSource, ModelSource, TrainSpec


def data_source(dataset: DatasetRecord, prompt: PromptRecord | None, **sampling: Any) -> DataSource:
    """Where a trainer reads the dataset and how it renders rows (``sampling``: fraction, train_split, seed)."""
    return DataSource(
        kind=dataset.type, path=dataset.location, hub_name=dataset.huggingface_name,
        hub_config=dataset.hf_config, hub_split=dataset.hf_split or "train", format=dataset.format,
        prompt_template=prompt.prompt_template if prompt else None,
        input_template=prompt.input_template if prompt else None,
        completion_template=prompt.completion_template if prompt else None,
        **sampling,
    )


def build_train_spec(tx: Transaction, settings: Settings, request: FineTuneRequest, run_id: str,
                     device: str, resume_from: str | None = None) -> TrainSpec:
    model = tx.models.get(request.base_model_id)
    dataset = tx.datasets.get(request.dataset_id)
    prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None
    init_adapter = tx.adapters.get(request.init_adapter_id) if request.init_adapter_id else None
    assert model is not None and dataset is not None, "validate the request first"
    training = training_values(tx, request)
    data = data_source(dataset, prompt, fraction=request.dataset_fraction, train_split=request.train_test_split,
                       seed=int(training["seed"]))
    return TrainSpec(
        run_id=run_id,
        run_dir=str(Path(request.output_dir) / run_id if request.output_dir else settings.runs_dir / run_id),
        method=request.method,
        training_mode=request.training_mode,
        model=ModelSource(source=model.source, architecture=model.architecture),
        data=data,
        adapter_name=request.adapter_name,
        training=training,
        lora=lora_values(tx, request) if request.training_mode != "full" else {},
        bitsandbytes=config_values(tx, request.bitsandbytes_config_id, "bitsandbytes_config")
        if request.training_mode == "qlora" else None,
        device=device,
        num_processes=request.num_processes,
        cpu_threads=request.cpu_threads,
        resume_from=resume_from,
        init_adapter=init_adapter.location if init_adapter else None,
        method_settings=resolved_settings(request.method, request.method_settings),
        rewards=reward_specs(request.rewards),
        mlflow_tracking_uri=settings.mlflow_tracking_uri if settings.mlflow_enabled else None,
        mlflow_experiment="ftapp",
    )
