"""SIGTERM for a training process: leave at once outside the training loop, checkpoint and stop inside it.

The supervisor cancels a run by sending SIGTERM to its process group, waits a grace period, then
sends SIGKILL. Outside the training loop (loading the model, preparing data, writing the result)
there is nothing worth saving, so the process exits at once. Inside it, the handler only raises a
flag: a Trainer callback sees it at the end of the current optimizer step, asks the Trainer to save a
checkpoint and stop, and the run ends with ``EXIT_CANCELLED`` after reporting the checkpoint.
Standard library only, so the handler is in place before the seconds of torch imports begin.

TEST HOOK: ``FTAPP_TRAINER_FAULT=ignore_sigterm`` makes the process ignore SIGTERM altogether, as a hung
trainer would, so the supervisor's escalation to SIGKILL can be tested with a real trainer.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from trainer.protocol import EXIT_CANCELLED

FAULT_ENV = "FTAPP_TRAINER_FAULT"
IGNORE_SIGTERM = "ignore_sigterm"


def _exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Cancellation:
    """Whether a SIGTERM arrived, and what it does in the current phase of the run."""

    def __init__(self, exit_now: Callable[[int], None] = _exit_now):
        self._exit_now = exit_now
        self._in_training = False
        self.requested = False

    def install(self) -> Cancellation:
        hung = os.environ.get(FAULT_ENV, "").strip() == IGNORE_SIGTERM  # the test hook above
        signal.signal(signal.SIGTERM, signal.SIG_IGN if hung else self._on_sigterm)
        return self

    def training_started(self) -> None:
        self._in_training = True

    def training_ended(self) -> bool:
        """Leave the training phase; True when a SIGTERM arrived during it.

        The phase flips before the flag is read: a signal landing in between then exits at once
        instead of setting a flag nobody reads any more.
        """
        self._in_training = False
        return self.requested

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self._in_training:
            self._exit_now(EXIT_CANCELLED)
