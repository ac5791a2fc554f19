"""Recover from a CUDA out-of-memory error in the middle of training (issue 19).

The memory plan (``trainer.protocol.plan_fit``) counts a micro-batch at its longest, but estimates err and other
processes take memory too: a long batch late in an epoch can still fail. ``train_recovering`` catches the
``torch.OutOfMemoryError`` the training loop raises, frees what the failed step held, keeps the state of the last
completed optimizer step as a checkpoint (nothing to keep before the first), halves the micro-batch and doubles the
accumulation — the same rows per optimizer step, so the run still trains on the batch it asked for — and resumes from
that checkpoint: the failed step runs again with smaller micro-batches. At most ``MAX_RECOVERIES`` times; each is
reported to ``on_recovery`` so the run's notes say "recovered from out-of-memory at step N".
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

MAX_RECOVERIES = 2


@dataclass(frozen=True)
class Recovery:
    step: int  # the optimizer step that ran out of memory
    rows_before: int
    accumulation_before: int
    rows: int
    accumulation: int
    resumed_from: str | None  # the checkpoint holding the last completed step (None: restarted from the first)

    @property
    def note(self) -> str:
        return (
            f"recovered from out-of-memory at step {self.step}: micro-batches of {self.rows} rows accumulated "
            f"{self.accumulation}x instead of {self.rows_before} x {self.accumulation_before} (the same "
            f"{self.rows * self.accumulation} rows per optimizer step)"
        )


def smaller_micro_batch(rows: int, accumulation: int) -> tuple[int, int] | None:
    """About half the rows per micro-batch, with the accumulation that keeps rows per optimizer step; None at one row."""
    smaller = next((r for r in range(rows // 2, 0, -1) if rows % r == 0), None)
    return None if smaller is None else (smaller, rows * accumulation // smaller)


def train_recovering(trainer: Trainer, resume_from: str | None, on_recovery: Callable[[Recovery], None]) -> list[Recovery]:
    """``trainer.train`` that survives up to ``MAX_RECOVERIES`` out-of-memory errors; returns the recoveries made."""
    recoveries: list[Recovery] = []
    resume = resume_from
    while True:
        try:
            trainer.train(resume_from_checkpoint=resume)
            return recoveries
        except torch.OutOfMemoryError:
            smaller = smaller_micro_batch(trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps)
            if len(recoveries) >= MAX_RECOVERIES or smaller is None:
                raise
        # Out of the except block: the traceback, and the failed step's tensors it references, are gone.
        step = trainer.state.global_step + 1
        rows_before, accumulation_before = trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps
        resume = _keep_last_step(trainer)
        _set_micro_batch(trainer, *smaller)
        recovery = Recovery(step, rows_before, accumulation_before, *smaller, resume)
        recoveries.append(recovery)
        on_recovery(recovery)


def _keep_last_step(trainer: Trainer) -> str | None:
    """Free the failed step's memory and save the last completed step as a checkpoint; its path, or None before step 1."""
    trainer.model.zero_grad(set_to_none=True)  # a partial accumulation belongs to the step that failed
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    checkpoint = None
    if trainer.state.global_step > 0:
        trainer._save_checkpoint(trainer.model, trial=None)  # what Trainer saves at save_steps: weights, optimizer, RNG
        checkpoint = os.path.join(trainer.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")
        trainer.control = trainer.callback_handler.on_save(trainer.args, trainer.state, trainer.control)
    # train() makes both again; resuming loads their state from the checkpoint.
    trainer.optimizer, trainer.lr_scheduler = None, None
    return checkpoint


def _set_micro_batch(trainer: Trainer, rows: int, accumulation: int) -> None:
    args = trainer.args
    args.per_device_train_batch_size, args.gradient_accumulation_steps = rows, accumulation
    trainer._train_batch_size = args.train_batch_size  # Trainer's dataloader reads this copy
    if getattr(args, "generation_batch_size", None):
        # GRPO samples one generation batch per optimizer step and trains it in micro-batches: the same batch,
        # split in more of them; the completions buffered for the failed step are sampled again.
        args.steps_per_generation = args.generation_batch_size // (rows * args.world_size)
        trainer._buffered_inputs = None
        trainer._step = 0
