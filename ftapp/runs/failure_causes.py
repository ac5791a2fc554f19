"""Why a run failed, in words a user can act on, from its exit status, events and log tail."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class FailureCause:
    cause: str
    suggestion: str


_PATTERNS: tuple[tuple[re.Pattern[str], FailureCause], ...] = (
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I),
        FailureCause(
            "out of GPU memory",
            "halve per_device_train_batch_size (double gradient_accumulation_steps to keep the batch), lower max_length, or use QLoRA / gradient checkpointing",
        ),
    ),
    (
        re.compile(r"ModuleNotFoundError|ImportError", re.I),
        FailureCause("import error", "a library is missing or broken in the training environment; reinstall with the README's command"),
    ),
    (
        re.compile(r"FileNotFoundError|No such file or directory|does not appear to have a file", re.I),
        FailureCause("missing file", "a model, dataset or checkpoint path no longer exists; check the registry entries"),
    ),
    (
        re.compile(r"\b(ValueError|TypeError|KeyError)\b", re.I),
        FailureCause("bad config", "a setting or the data does not fit the model; see the log tail"),
    ),
)


# torchrun's summary when ranks of a multi-GPU run end badly (accelerate launch runs torchrun): each failed rank with
# its exit code, negative for a signal. Its "Root Cause" line names the lowest rank of those seen at once, so it is
# not read: a signal comes from outside the run (the kernel's out-of-memory killer, a hand), never from another rank.
_RANK_EXIT = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"


def rank_killed(log_tail: str) -> FailureCause | None:
    """The cause when a rank of a multi-GPU run was killed by a signal: the other ranks then fail too, with errors
    about the lost rank that say nothing of why, so the launcher's word on which rank a signal ended comes first."""
    killed = [(rank, -int(code)) for rank, code in _RANK_EXIT.findall(log_tail) if int(code) < 0]
    if not killed:
        return None  # a rank that raised reports its own error (its ``failed`` event and traceback)
    rank, number = killed[0]
    return FailureCause(
        f"rank {rank} killed",
        f"rank {rank} was stopped by {_signal_name(number)} (out of host memory, or killed by hand) and the other ranks "
        "stopped with it; give the run more host memory, or resume it from its last checkpoint",
    )


def classify(exit_code: int | None, log_tail: str, error_type: str | None = None) -> FailureCause:
    killed = rank_killed(log_tail)
    if killed is not None:
        return killed
    text = f"{error_type or ''}\n{log_tail}"
    for pattern, cause in _PATTERNS:
        if pattern.search(text):
            return cause
    if exit_code is not None and exit_code < 0:
        name = _signal_name(-exit_code)
        return FailureCause("killed", f"the trainer was stopped by {name} (out of host memory, or killed by hand)")
    return FailureCause("crashed", "see the log tail")


def vanished() -> FailureCause:
    """A run that another process started (so no exit status can be read here) and that ended without reporting
    ``done`` or ``failed`` and without a traceback: a signal stopped it."""
    return FailureCause(
        "killed",
        "it was most likely killed by a signal (SIGKILL: out of host memory, or killed by hand); "
        "give it more host memory or resume it from its last checkpoint",
    )


# Why the supervisor itself gave up on one run (the others keep going), and what to do about it.
SUPERVISION_CAUSES = {
    "bad events": "the trainer wrote events this app cannot store (a number no database column holds?); the run "
    "was stopped so that every other run stays supervised; check its settings and the log",
    "launch refused": "nothing was started: only a spec that ftapp wrote into the run's own folder <home>/runs/<run id>, "
    "for a row that points at that folder, is launched; submit the run again",
    "launch failed": "the trainer process could not be started; see the message",
    "finish failed": "the run ended, but storing its result failed; see the message and the log",
    "supervision failed": "watching the run failed; see the message",
}


def read_tail(path: str | None, chars: int = LOG_TAIL_CHARS) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - chars))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
