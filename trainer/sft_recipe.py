"""The supervised fine-tuning recipe: setup → train → final report → save → cleanup, reported as run events.

Shaped like torchtune's single-device recipes: each phase is one function reading top to bottom.
Events, in order: ``started`` (when the training loop begins), ``progress`` per logging step,
``eval`` at the eval interval and once at the end, ``artifact {kind: checkpoint}`` whenever a
checkpoint is complete, ``sample`` (greedy answers to a few validation rows), ``artifact {kind:
adapter|model}`` once the result is on disk, then ``done``. The caller (``trainer.sft``) turns
exceptions into ``failed`` and owns the exit status.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import torch
import transformers
from transformers import PreTrainedTokenizerBase
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import SFTConfig, SFTTrainer

if TYPE_CHECKING:
    from trainer.run_tracking import RunTracking

from trainer.cancellation import Cancellation
from trainer.dataset_loading import load_rows, split_rows, write_split
from trainer.model_loading import compile_blocks, detect_device, load_model, load_tokenizer, read_model_shape, speed_up_adapters
from trainer.protocol import ARTIFACT, DONE, SAMPLE, SPLIT_FILE, TrainSpec
from trainer.run_control import StopOnCancel, injected_faults
from trainer.run_events import EventSink, RunEvents
from trainer.training_arguments import fit_to_installed, resolve_training
from trainer.training_data import TrainingData, build_training_data, sample_cases
from trainer.validation_samples import generate_samples

RECIPE_FILE = "recipe.json"  # in the run directory: what the speed recipe chose on this machine, and why


@dataclass
class SftRun:
    trainer: SFTTrainer
    tokenizer: PreTrainedTokenizerBase
    data: TrainingData
    run_events: RunEvents
    tracking: RunTracking | None


def run_sft(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> bool:
    """Train, save and report; True when the run completed, False when a SIGTERM stopped training."""
    run = setup(spec, events, cancellation)
    status = "FAILED"
    try:
        if not train(run, spec, cancellation):
            status = "KILLED"
            return False
        report_final(run, events)
        save(run, spec, events)
        status = "FINISHED"
    finally:
        cleanup(run, status)
    events.emit(DONE)
    return True


def setup(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> SftRun:
    faults = injected_faults(os.environ)  # a mistyped test hook fails before minutes of loading
    clock = _PhaseClock()
    _quiet_progress_bars()
    device = detect_device(spec.device)
    if device.kind == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    tokenizer = load_tokenizer(spec.model)

    rows = load_rows(spec.data)
    split = split_rows(len(rows), fraction=spec.data.fraction, train_split=spec.data.train_split, seed=spec.data.seed)
    write_split(split, spec.data, Path(spec.run_dir) / SPLIT_FILE)
    data = build_training_data(
        rows, split, spec.data, tokenizer,
        completion_only_loss=bool(spec.training.get("completion_only_loss", True)),
        assistant_only_loss=bool(spec.training.get("assistant_only_loss", True)),
    )
    clock.lap("data")
    resolved = resolve_training(
        spec.training, device,
        training_mode=spec.training_mode,
        output_dir=str(spec.checkpoint_dir),
        has_validation=len(data.validation) > 0,
        completion_only_loss=data.completion_only_loss,
        assistant_only_loss=data.assistant_only_loss,
        model=read_model_shape(spec.model) if device.kind == "cuda" else None,
    )
    for note in resolved.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    recipe = resolved.recipe()
    print(f"recipe: {json.dumps(recipe)}", file=sys.stderr, flush=True)
    (Path(spec.run_dir) / RECIPE_FILE).write_text(json.dumps({**recipe, "notes": resolved.notes}, indent=2) + "\n", encoding="utf-8")

    model, peft_config = load_model(spec, resolved, device)
    clock.lap("model")
    facts = {
        "run_id": spec.run_id, "device": device.kind, "device_name": device.name, "training_mode": spec.training_mode,
        "num_train_rows": len(data.train), "num_eval_rows": len(data.validation), "data_layout": data.layout,
        "notes": resolved.notes, "recipe": recipe, "mlflow_run_id": None,
    }
    run_events = RunEvents(events, facts)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**fit_to_installed(resolved.config, {f.name for f in fields(SFTConfig)})),
        train_dataset=data.train,
        eval_dataset=data.validation if len(data.validation) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_events, StopOnCancel(cancellation), *faults],
    )
    # They print each log dict to stdout, where the supervisor expects FINETUNE_PROGRESS lines only.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    speed_up_adapters(trainer.model)  # after SFTTrainer wrapped the model with PEFT
    if resolved.compile_blocks:
        compile_blocks(trainer.model)
    clock.lap("trainer")

    tracking = None
    if spec.mlflow_tracking_uri and trainer.is_world_process_zero():  # one MLflow run per run, not per GPU
        # Imported only when tracking is on: a training host may have no mlflow (FTAPP_MLFLOW=0).
        from trainer.run_tracking import RunTracking, run_params

        # Started last, so a run that cannot even be set up leaves no dangling "RUNNING" MLflow run.
        tracking = RunTracking.start(spec, run_params(spec, resolved.notes))
        facts["mlflow_run_id"] = tracking.run_id
        trainer.add_callback(tracking.callback())
    return SftRun(trainer, tokenizer, data, run_events, tracking)


def train(run: SftRun, spec: TrainSpec, cancellation: Cancellation) -> bool:
    """Run the training loop (from ``spec.resume_from`` when given); False when cancelled."""
    try:
        run.trainer.train(resume_from_checkpoint=spec.resume_from)
    finally:
        cancelled = cancellation.training_ended()
    return not cancelled


def report_final(run: SftRun, events: EventSink) -> None:
    """The eval loss of the final weights (whatever the eval interval) and a few greedy answers."""
    trainer = run.trainer
    step = trainer.state.global_step
    if len(run.data.validation) and run.run_events.last_eval_step != step:
        trainer.evaluate()  # reported by RunEvents.on_evaluate
    cases = sample_cases(run.data.validation, run.data.layout)
    if cases and trainer.is_world_process_zero():
        events.emit(SAMPLE, step=step, rows=generate_samples(trainer.model, run.tokenizer, cases))


def save(run: SftRun, spec: TrainSpec, events: EventSink) -> None:
    # An adapter (plus tokenizer) for LoRA/QLoRA, the whole model (plus tokenizer) for full fine-tuning.
    run.trainer.save_model(str(spec.output_dir))
    events.emit(ARTIFACT, kind="model" if spec.training_mode == "full" else "adapter", path=str(spec.output_dir))
    if run.tracking:
        run.tracking.log_output(spec.output_dir, include_weights=spec.training_mode != "full")


def cleanup(run: SftRun, status: str) -> None:
    if run.tracking:
        run.tracking.finish(status)


class _PhaseClock:
    """Prints how long each setup phase took (trainer.log), so a slow start says where its time went."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        print(f"setup: {phase} took {now - self.last:.1f}s", file=sys.stderr, flush=True)
        self.last = now


def _quiet_progress_bars() -> None:
    # tqdm bars for dataset maps and weight loading fill trainer.log with carriage returns.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
