"""RunEvents' progress events: SFT's fields alone, DPO/GRPO's with their own numbers under ``metrics``."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainer.protocol import PROGRESS_METRICS_FIELD
from trainer.run_events import RunEvents


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, /, **data: Any) -> None:
        self.events.append((kind, data))


LOGS = {
    "loss": 0.6,
    "learning_rate": 1e-3,
    "grad_norm": 2.0,
    "epoch": 0.5,
    "num_tokens": 100.0,
    "rewards/margins": 0.25,
    "rewards/accuracies": 0.75,
    "logps/chosen": math.nan,
    "kl": math.inf,
    "note": "text",
}


def _log(events: RunEvents, step: int, logs: dict[str, Any]) -> None:
    state = TrainerState(global_step=step, max_steps=10, epoch=0.5)
    events.on_log(TrainingArguments(output_dir="unused", report_to="none"), state, TrainerControl(), logs=dict(logs))


def test_method_runs_report_every_other_finite_number_and_their_item_rate() -> None:
    sink = Sink()
    events = RunEvents(sink, {}, method_metrics=True, items_per_step=("pairs_per_s", 16))
    events.on_train_begin(
        TrainingArguments(output_dir="unused", report_to="none"), TrainerState(max_steps=10), TrainerControl(), model=torch.nn.Linear(2, 2)
    )
    time.sleep(0.1)
    _log(events, 1, LOGS)
    kind, data = sink.events[1]
    metrics = data[PROGRESS_METRICS_FIELD]
    assert kind == "progress" and data["loss"] == 0.6
    # NaN, infinity and text are left out; the fields a progress event has already are not repeated.
    assert set(metrics) == {"rewards/margins", "rewards/accuracies", "pairs_per_s"}
    assert metrics["rewards/margins"] == 0.25 and 0 < metrics["pairs_per_s"] <= 16 / 0.1


def test_sft_progress_events_have_no_metrics_field() -> None:
    sink = Sink()
    _log(RunEvents(sink, {}), 1, LOGS)
    assert PROGRESS_METRICS_FIELD not in sink.events[0][1]
