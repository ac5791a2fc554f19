"""A run's vocabulary, defined once: its statuses, which of them are live or terminal, and its kinds.

StrEnums compare equal to the strings SQLite stores, so rows, specs and JSON output keep their values.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunKind(StrEnum):
    FINETUNE = "finetune"
    EVALUATION = "evaluation"
    INFERENCE = "inference"
    EXPORT = "export"
    SERVE = "serve"


LIVE: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)
TERMINAL: tuple[RunStatus, ...] = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
RESUMABLE: tuple[RunStatus, ...] = (RunStatus.FAILED, RunStatus.CANCELLED)
# Workers that wait for requests until stopped (a server) or idle (a compare worker): they train nothing, a stop is
# how they end, and on a CPU they do not take the one slot of a training run.
LONG_LIVED: tuple[RunKind, ...] = (RunKind.INFERENCE, RunKind.SERVE)
