"""The steps every training recipe (SFT, DPO, GRPO) shares, so each recipe module holds only what is its own.

A recipe's setup reads: ``load_inputs`` (device, tokenizer, rows and the held-out split) → its own data and
config → ``announce_recipe`` → its Trainer → ``prepare_trainer`` → ``start_tracking``. Each recipe then spells
out its phases itself, top to bottom: ``train`` → its own final report → ``save`` → ``cleanup`` → ``done``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import datasets
import torch
import transformers
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

if TYPE_CHECKING:
    from trainer.run_tracking import RunTracking

import trainer as trainer_package
from trainer.cancellation import Cancellation
from trainer.data.loading import DataSplit, load_rows, split_rows, write_split
from trainer.fsdp import save_gathered
from trainer.model_loading import compile_blocks, detect_device, load_tokenizer, speed_up_adapters
from trainer.oom_recovery import Recovery, train_recovering
from trainer.protocol import ARTIFACT, SPLIT_FILE, TrainSpec
from trainer.run_control import injected_faults
from trainer.run_events import EventSink, RunEvents
from trainer.training_arguments import DeviceCaps, ResolvedTraining

RECIPE_FILE = "recipe.json"  # in the run directory: what the speed recipe chose on this machine, and why


class PhaseClock:
    """Prints how long each setup phase took (trainer.log), so a slow start says where its time went."""

    def __init__(self) -> None:
        self.last = trainer_package.PROCESS_STARTED  # the first lap is the interpreter start and the ML imports
        self.lap("imports")

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        print(f"setup: {phase} took {now - self.last:.1f}s", file=sys.stderr, flush=True)
        self.last = now


@dataclass
class Inputs:
    device: DeviceCaps
    tokenizer: PreTrainedTokenizerBase
    rows: datasets.Dataset
    split: DataSplit
    faults: list[TrainerCallback]  # test hooks (trainer.run_control.FAULT_ENV)
    clock: PhaseClock


def load_inputs(spec: TrainSpec) -> Inputs:
    """The device, the tokenizer and the dataset's rows with their split, written to ``split.json``."""
    faults = injected_faults(os.environ)  # a mistyped test hook fails before minutes of loading
    clock = PhaseClock()
    _quiet_progress_bars()
    device = detect_device(spec.device)
    if device.kind == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    tokenizer = load_tokenizer(spec.model)
    rows = load_rows(spec.data)
    check_tokenizer_reads(tokenizer, rows, spec.model.source)
    split = split_rows(len(rows), fraction=spec.data.fraction, train_split=spec.data.train_split, seed=spec.data.seed)
    write_split(split, spec.data, Path(spec.run_dir) / SPLIT_FILE)
    return Inputs(device, tokenizer, rows, split, faults, clock)


def check_tokenizer_reads(tokenizer: PreTrainedTokenizerBase, rows: datasets.Dataset, model: str, sample: int = 20) -> None:
    """Refuse a tokenizer that turns the rows' text into no tokens at all: training would run on end-of-text
    tokens alone, with a loss of 0 and nothing learned (seen with a model_type whose tokenizer class
    transformers forces over the files it was saved with)."""
    texts = [text for row in rows.select(range(min(sample, len(rows)))) for text in _strings(row) if text.strip()]
    if texts and not any(tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts):
        raise ValueError(
            f"the tokenizer of {model} ({type(tokenizer).__name__}) turns the dataset's text into no tokens "
            f"(e.g. {texts[0][:60]!r} -> []); it does not read this vocabulary: check the model's tokenizer files"
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def announce_recipe(spec: TrainSpec, resolved: ResolvedTraining, notes: list[str] | None = None) -> dict[str, Any]:
    """Print the notes and the speed recipe to the log and write ``recipe.json``; returns the recipe."""
    notes = resolved.notes if notes is None else notes
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    recipe = resolved.recipe()
    print(f"recipe: {json.dumps(recipe)}", file=sys.stderr, flush=True)
    (Path(spec.run_dir) / RECIPE_FILE).write_text(json.dumps({**recipe, "notes": notes}, indent=2) + "\n", encoding="utf-8")
    return recipe


def prepare_trainer(trainer: Trainer, resolved: ResolvedTraining) -> None:
    # They print each log dict to stdout, where the supervisor expects FINETUNE_PROGRESS lines only.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    speed_up_adapters(trainer.model)  # after the trainer wrapped the model with PEFT
    if resolved.compile_blocks:
        compile_blocks(trainer.model)


def start_tracking(spec: TrainSpec, trainer: Trainer, notes: list[str], facts: dict[str, Any]) -> RunTracking | None:
    if not (spec.mlflow_tracking_uri and trainer.is_world_process_zero()):  # one MLflow run per run, not per GPU
        return None
    # Imported only when tracking is on: a training host may have no mlflow (FTAPP_MLFLOW=0).
    from trainer.run_tracking import RunTracking, run_params

    # Started last, so a run that cannot even be set up leaves no dangling "RUNNING" MLflow run.
    tracking = RunTracking.start(spec, run_params(spec, notes))
    facts["mlflow_run_id"] = tracking.run_id
    trainer.add_callback(tracking.callback())
    return tracking


D = TypeVar("D")


@dataclass
class RecipeRun(Generic[D]):
    """A set-up run of any recipe: its TRL trainer, tokenizer, data (``D``: the recipe's own kind), the
    callback that reports it, and its MLflow run when tracking is on."""

    trainer: Trainer
    tokenizer: PreTrainedTokenizerBase
    data: D
    run_events: RunEvents
    tracking: RunTracking | None
    recoveries: list[Recovery] = field(default_factory=list)  # out-of-memory errors recovered from (trainer.oom_recovery)


def evaluate_final_weights(run: RecipeRun, validation_rows: int) -> int:
    """The eval numbers of the final weights, whatever the eval interval (unless the last step was just
    evaluated); returns that step. Reported by ``RunEvents.on_evaluate``."""
    step = run.trainer.state.global_step
    if validation_rows and run.run_events.last_eval_step != step:
        run.trainer.evaluate()
    return step


def train(run: RecipeRun, spec: TrainSpec, cancellation: Cancellation) -> bool:
    """Run the training loop (from ``spec.resume_from`` when given), recovering from out-of-memory errors with
    smaller micro-batches (``trainer.oom_recovery``); False when cancelled."""

    def note(recovery: Recovery) -> None:
        # The log, recipe.json, the next ``started`` event and ``done`` all say it: the run is not the one planned.
        print(f"note: {recovery.note}", file=sys.stderr, flush=True)
        run.run_events.facts["notes"] = [*run.run_events.facts.get("notes", []), recovery.note]
        recipe = run.run_events.facts.get("recipe")
        if isinstance(recipe, dict):
            recipe.update(rows_per_micro_batch=recovery.rows, gradient_accumulation_steps=recovery.accumulation)
            if recipe.get("tokens_per_micro_batch"):
                recipe["tokens_per_micro_batch"] = recipe["tokens_per_micro_batch"] * recovery.rows // recovery.rows_before
            path = Path(spec.run_dir) / RECIPE_FILE
            path.write_text(json.dumps({**recipe, "notes": run.run_events.facts["notes"]}, indent=2) + "\n", encoding="utf-8")

    try:
        run.recoveries = train_recovering(run.trainer, spec.resume_from, note)
    finally:
        cancelled = cancellation.training_ended()
    return not cancelled


def done_details(run: RecipeRun) -> dict[str, Any]:
    """What the ``done`` event adds: the out-of-memory recoveries, when there were any."""
    if not run.recoveries:
        return {}
    return {
        "notes": [r.note for r in run.recoveries],
        "recovered_from_oom": [
            {"step": r.step, "rows_per_micro_batch": r.rows, "gradient_accumulation_steps": r.accumulation} for r in run.recoveries
        ],
    }


def save(run: RecipeRun, spec: TrainSpec, events: EventSink) -> None:
    # An adapter (plus tokenizer) for LoRA/QLoRA, the whole model (plus tokenizer) for full fine-tuning; FSDP2's
    # sharded state gathered on rank 0 first (trainer.fsdp), into the same files.
    if run.trainer.is_fsdp_enabled:
        save_gathered(run.trainer, str(spec.output_dir), spec.training_mode)
    else:
        run.trainer.save_model(str(spec.output_dir))
    events.emit(ARTIFACT, kind="model" if spec.training_mode == "full" else "adapter", path=str(spec.output_dir))
    if run.tracking:
        run.tracking.log_output(spec.output_dir, include_weights=spec.training_mode != "full")


def cleanup(run: RecipeRun, status: str) -> None:
    if run.tracking:
        run.tracking.finish(status)


def _quiet_progress_bars() -> None:
    # tqdm bars for dataset maps and weight loading fill trainer.log with carriage returns.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
