"""SIGTERM phases of a training process, and the fault hook's parsing (the processes are tested in test_sft_process)."""

from __future__ import annotations

import os
import signal

import pytest

from trainer.cancellation import Cancellation
from trainer.protocol import EXIT_CANCELLED


class ExitCalled(Exception):
    pass


def _exit(code: int) -> None:
    raise ExitCalled(code)


@pytest.fixture
def cancellation():
    previous = signal.getsignal(signal.SIGTERM)
    yield Cancellation(exit_now=_exit).install()
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_before_training_exits_at_once_with_143(cancellation: Cancellation) -> None:
    with pytest.raises(ExitCalled) as exited:
        os.kill(os.getpid(), signal.SIGTERM)
    assert exited.value.args == (EXIT_CANCELLED,) == (143,)


def test_sigterm_during_training_only_asks_to_stop_and_is_reported_when_training_ends(cancellation: Cancellation) -> None:
    cancellation.training_started()
    os.kill(os.getpid(), signal.SIGTERM)
    assert cancellation.requested
    assert cancellation.training_ended() is True
    # Saving the result after training is not worth waiting for: a later SIGTERM exits at once.
    with pytest.raises(ExitCalled):
        os.kill(os.getpid(), signal.SIGTERM)


def test_training_that_ends_without_a_signal_is_not_cancelled(cancellation: Cancellation) -> None:
    cancellation.training_started()
    assert cancellation.training_ended() is False


def test_the_fault_hook_is_off_by_default_and_refuses_what_it_does_not_know() -> None:
    from trainer.run_control import OutOfMemoryAtStep, injected_faults

    assert injected_faults({}) == []
    (fault,) = injected_faults({"FTAPP_TRAINER_FAULT": "cuda_oom_at_step=4"})
    assert isinstance(fault, OutOfMemoryAtStep) and fault.step == 4 and not fault.once
    (once,) = injected_faults({"FTAPP_TRAINER_FAULT": "cuda_oom_once_at_step=2"})
    assert once.step == 2 and once.once
    for wrong in ("cuda_oom_at_step=0", "cuda_oom_at_step=x", "oom=3"):
        with pytest.raises(ValueError, match="not a known fault"):
            injected_faults({"FTAPP_TRAINER_FAULT": wrong})
