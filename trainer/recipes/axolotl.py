"""The Axolotl recipe: setup → train → save → cleanup, Axolotl's own training reported as run events.

``setup`` writes ``<run_dir>/axolotl.yaml``, the stored config with the run's model, dataset and folders written in
(``trainer.protocol.axolotl_run_config``), and loads it the way ``axolotl train`` does: ``load_cfg`` (Axolotl's own
validation and defaults), then ``load_datasets``. ftapp's callbacks join the Trainer Axolotl builds through an Axolotl
plugin object: ``RunEvents`` (started, progress, eval, checkpoint events) and ``StopOnCancel`` (SIGTERM: checkpoint and
stop). ``train`` is ``axolotl.train.train`` (model, PEFT, Trainer, loop, checkpoints in ``<run_dir>/checkpoints``, the
result saved there too); ``save`` copies the result into ``<run_dir>/output``, where every run's result is.
Events: ``started``, ``progress`` per logging step, ``eval``, ``artifact {kind: checkpoint}``, ``artifact {kind:
adapter|model}``, ``done``; the caller (``trainer.recipes.axolotl_process``) turns exceptions into ``failed``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from axolotl.cli.args import TrainerCliArgs
from axolotl.cli.config import load_cfg
from axolotl.common.datasets import load_datasets
from axolotl.integrations.base import BasePlugin, PluginManager
from axolotl.train import train as axolotl_train
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from trainer.cancellation import Cancellation
from trainer.protocol import ARTIFACT, DONE, RUN_CONFIG_FILE, TrainSpec, axolotl_run_config
from trainer.run_control import StopOnCancel
from trainer.run_events import EventSink, RunEvents

RECIPE_FILE = "recipe.json"  # in the run directory, as the TRL recipes write it
KEPT_OUT = ("debug.log",)  # Axolotl's log in its output folder: the run's log has it already


class AxolotlRunEvents(RunEvents):
    """Axolotl logs its running token count as ``tokens/total``; RunEvents reads TRL's ``num_tokens`` for tokens/s."""

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if logs and "num_tokens" not in logs and "tokens/total" in logs:
            logs = {**logs, "num_tokens": logs["tokens/total"]}
        super().on_log(args, state, control, logs=logs, **kwargs)


class RunReporting(BasePlugin):
    """ftapp's callbacks in the Trainer Axolotl builds, and its own printing callbacks out of the run's log."""

    def __init__(self, callbacks: list[TrainerCallback]):
        super().__init__()
        self.callbacks = callbacks

    def add_callbacks_pre_trainer(self, cfg: Any, model: Any) -> list[Any]:
        return list(self.callbacks)

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)


def setup(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> tuple[Any, Any, AxolotlRunEvents]:
    """The run's config written and loaded, its datasets prepared, ftapp's callbacks registered."""
    assert spec.axolotl_config is not None, "axolotl_process.check_spec refuses a spec without one"
    config, notes = axolotl_run_config(
        spec.axolotl_config, model=spec.model.source, data=spec.data, run_dir=spec.run_dir, resume_from=spec.resume_from, device=spec.device
    )
    path = Path(spec.run_dir) / RUN_CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    recipe = {"framework": "axolotl", "config": str(path), "adapter": config.get("adapter") or "full"}
    (Path(spec.run_dir) / RECIPE_FILE).write_text(json.dumps({**recipe, "notes": notes}, indent=2) + "\n", encoding="utf-8")
    cfg = load_cfg(str(path))
    meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    device_name = torch.cuda.get_device_name(0) if spec.device == "cuda" and torch.cuda.is_available() else "cpu"
    facts = {
        "run_id": spec.run_id,
        "device": spec.device,
        "device_name": device_name,
        "training_mode": spec.training_mode,
        "num_train_rows": len(meta.train_dataset),
        "num_eval_rows": len(meta.eval_dataset) if meta.eval_dataset is not None else 0,
        "notes": notes,
        "recipe": recipe,
        "mlflow_run_id": None,
    }
    run_events = AxolotlRunEvents(events, facts)
    PluginManager.get_instance().plugins["ftapp"] = RunReporting([run_events, StopOnCancel(cancellation)])
    return cfg, meta, run_events


def train(cfg: Any, meta: Any, cancellation: Cancellation) -> bool:
    """Axolotl's training, from the checkpoint ``resume_from_checkpoint`` names when resuming; False when cancelled."""
    try:
        axolotl_train(cfg=cfg, dataset_meta=meta)
    finally:
        cancelled = cancellation.training_ended()
    return not cancelled


def save(spec: TrainSpec, events: EventSink) -> None:
    """Axolotl saved the result beside the checkpoints; the run's result goes to ``<run_dir>/output``."""
    result = Path(spec.run_dir) / "checkpoints"
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    for item in result.iterdir():
        if item.is_file() and item.name not in KEPT_OUT:
            shutil.copy2(item, spec.output_dir / item.name)
    events.emit(ARTIFACT, kind="model" if spec.training_mode == "full" else "adapter", path=str(spec.output_dir))


def run_axolotl(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> bool:
    """setup → train → save → done; True when the run completed, False when a SIGTERM stopped it (after a checkpoint)."""
    cfg, meta, _run_events = setup(spec, events, cancellation)
    if not train(cfg, meta, cancellation):
        return False
    save(spec, events)
    events.emit(DONE)
    return True
