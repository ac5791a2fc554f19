"""Trainer callbacks that steer the run: stop with a checkpoint on cancel, and injected faults for tests.

``FAULT_ENV`` is a TEST HOOK for the supervisor's tests, not a user feature: with
``FTAPP_TRAINER_FAULT=cuda_oom_at_step=N`` the run raises the same ``torch.OutOfMemoryError`` a GPU
would at the start of optimizer step N, so the failure path (``failed`` event, exit status 1, the
"out of GPU memory" diagnosis) can be exercised on a machine without a GPU; ``cuda_oom_once_at_step=N`` raises
it once only, as a long batch late in an epoch does, so the recovery (``trainer.oom_recovery``) can be. ``ignore_sigterm``
(``trainer.cancellation``) makes it a trainer that a cancel's SIGTERM does not stop. ``sigkill_rank_at_step=R:N``: rank R
of a multi-process run kills itself with SIGKILL at the start of step N, as the kernel's out-of-memory killer would, so
that a rank dying under the others can be tested.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trainer.cancellation import FAULT_ENV, IGNORE_SIGTERM, Cancellation

OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.02 GiB is free. "
    f"(injected by {FAULT_ENV})"
)


class StopOnCancel(TrainerCallback):
    """Switch SIGTERM from "exit now" to "checkpoint and stop" for the span of the training loop."""

    def __init__(self, cancellation: Cancellation):
        self.cancellation = cancellation

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.cancellation.training_started()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.cancellation.requested:
            # The Trainer saves (model, optimizer, scheduler, RNG, step) before it checks for the stop.
            control.should_save = True
            control.should_training_stop = True


class OutOfMemoryAtStep(TrainerCallback):
    def __init__(self, step: int, once: bool = False):
        self.step, self.once, self.raised = step, once, False

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step and not (self.once and self.raised):
            self.raised = True
            raise torch.OutOfMemoryError(OOM_MESSAGE)


class KilledAtStep(TrainerCallback):
    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step and args.process_index == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)


def injected_faults(environ: Mapping[str, str]) -> list[TrainerCallback]:
    """The fault callbacks ``FTAPP_TRAINER_FAULT`` asks for; a value we do not know is an error, not a no-op."""
    value = environ.get(FAULT_ENV, "").strip()
    if not value or value == IGNORE_SIGTERM:  # that one acts on the signal handler, not through a callback
        return []
    name, _, argument = value.partition("=")
    if name in ("cuda_oom_at_step", "cuda_oom_once_at_step") and argument.isdigit() and int(argument) >= 1:
        return [OutOfMemoryAtStep(int(argument), once=name == "cuda_oom_once_at_step")]
    rank, _, step = argument.partition(":")
    if name == "sigkill_rank_at_step" and rank.isdigit() and step.isdigit() and int(step) >= 1:
        return [KilledAtStep(int(rank), int(step))]
    raise ValueError(
        f"{FAULT_ENV}={value!r} is not a known fault; expected cuda_oom_at_step=N or cuda_oom_once_at_step=N "
        f"with N >= 1, sigkill_rank_at_step=R:N, or {IGNORE_SIGTERM}"
    )
