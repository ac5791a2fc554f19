"""A Trainer callback that reports the run as protocol events: started, progress, eval, checkpoints.

``started`` is sent from ``on_train_begin`` because only then does the Trainer know the total
number of steps and, when resuming, the step it resumed from. Throughput and ETA are measured over
this process's own steps, so a resumed run does not count the earlier run's steps as instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from trainer.model_loading import count_parameters
from trainer.protocol import ARTIFACT, EVAL, PROGRESS, PROGRESS_METRICS_FIELD, STARTED
from trainer.protocol import finite_number as finite  # a NaN loss must not crash the run

# Eval metrics about speed say nothing about the model; the supervisor stores every eval number.
SPEED_METRICS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_num_tokens")
# Log keys a progress event has fields for; DPO/GRPO send the rest of a log dict as ``metrics``.
PROGRESS_LOG_KEYS = frozenset({"loss", "learning_rate", "grad_norm", "epoch", "num_tokens"})


class EventSink(Protocol):
    def emit(self, kind: str, /, **data: Any) -> Any: ...


class RunEvents(TrainerCallback):
    """``method_metrics``: DPO and GRPO progress events also carry every other number TRL logged, under
    ``metrics``; ``items_per_step`` (name, count) adds the rate of those items, e.g. ("pairs_per_s", 16)."""

    def __init__(
        self, events: EventSink, facts: dict[str, Any], *, method_metrics: bool = False, items_per_step: tuple[str, int] | None = None
    ):
        self.events = events
        self.facts = facts  # fields of ``started`` known before training: rows, device, MLflow run id
        self.method_metrics = method_metrics
        self.items_per_step = items_per_step
        self.last_eval_step: int | None = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_log = (0.0, 0.0)  # (time, tokens trained so far) at the previous progress event
        self._last_step = (0.0, 0)  # (time, global step) at the previous progress event

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        trainable, total = count_parameters(kwargs["model"])
        self._start_time = time.monotonic()
        self._start_step = state.global_step
        self._last_log = (self._start_time, 0.0)
        self._last_step = (self._start_time, state.global_step)
        self.events.emit(
            STARTED,
            **self.facts,
            total_steps=state.max_steps,
            trainable_params=trainable,
            total_params=total,
            resumed_from_step=state.global_step or None,
        )

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or "loss" not in logs:  # eval and end-of-training summaries have no training loss
            return
        now = time.monotonic()
        last_time, last_tokens = self._last_log
        tokens = finite(logs.get("num_tokens"))  # TRL's running count of trained (non-padding) tokens
        tokens_per_s = None
        if tokens is not None and now > last_time:
            tokens_per_s = round((tokens - last_tokens) / (now - last_time), 1)
            self._last_log = (now, tokens)
        done_here = state.global_step - self._start_step
        eta_s = None
        if done_here > 0:
            eta_s = round((now - self._start_time) / done_here * max(0, state.max_steps - state.global_step), 1)
        extra = {PROGRESS_METRICS_FIELD: self._method_metrics(logs, state.global_step, now)} if self.method_metrics else {}
        self.events.emit(
            PROGRESS,
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=finite(round(state.epoch or 0.0, 4)),
            loss=finite(logs["loss"]),
            lr=finite(logs.get("learning_rate")),
            grad_norm=finite(logs.get("grad_norm")),
            tokens_per_s=tokens_per_s,
            eta_s=eta_s,
            **extra,
        )

    def _method_metrics(self, logs: dict[str, Any], step: int, now: float) -> dict[str, float]:
        metrics = {key: number for key, value in logs.items() if key not in PROGRESS_LOG_KEYS and (number := finite(value)) is not None}
        last_time, last_step = self._last_step
        if self.items_per_step and step > last_step and now > last_time:
            name, count = self.items_per_step
            metrics[name] = round((step - last_step) * count / (now - last_time), 2)
        self._last_step = (now, step)
        return metrics

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        metrics = metrics or {}
        extra = {key: finite(value) for key, value in metrics.items() if key.startswith("eval_") and key not in SPEED_METRICS}
        extra.pop("eval_loss", None)
        self.last_eval_step = state.global_step
        self.events.emit(EVAL, step=state.global_step, eval_loss=finite(metrics.get("eval_loss")), **extra)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Trainer calls on_save after the checkpoint directory is complete, under this name.
        path = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.events.emit(ARTIFACT, kind="checkpoint", path=str(path), step=state.global_step)
