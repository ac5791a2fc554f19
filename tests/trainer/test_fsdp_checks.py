"""The trainer's side of FSDP2 (issue 20) that needs no second process: what a sharded spec must be and how it must
be started, and every rank's failure reported with its rank. The real two-rank run is tests/ftapp/test_fsdp_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import read_events, write_spec
from trainer.recipes.spec_checks import check_training_spec

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}


def test_a_sharded_spec_runs_sft_only_and_only_under_accelerates_fsdp2_launch(make_spec, tmp_path: Path, monkeypatch) -> None:
    for name in FSDP_ENV:
        monkeypatch.delenv(name, raising=False)
    spec = make_spec(tmp_path / "run", strategy="fsdp2", num_processes=2)
    with pytest.raises(ValueError, match="was not started by `accelerate launch` with an FSDP2 config"):
        check_training_spec(spec, "sft")  # by hand it would train whole copies, the run FSDP2 was chosen to avoid
    for name, value in FSDP_ENV.items():
        monkeypatch.setenv(name, value)
    check_training_spec(spec, "sft")
    with pytest.raises(ValueError, match="spec.strategy must be one of ddp, fsdp2, got 'zero3'"):
        check_training_spec(make_spec(tmp_path / "zero3", strategy="zero3"), "sft")


def test_every_rank_reports_its_own_failure_with_its_rank(make_spec, tmp_path: Path, monkeypatch) -> None:
    spec = make_spec(tmp_path / "run", num_processes=2)
    path = write_spec(spec)
    monkeypatch.setenv("WORLD_SIZE", "2")

    def lose_memory(spec, events, cancellation) -> bool:
        raise MemoryError("no host memory left")

    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        code = run_process.run("sft", path, run_process.spec_reader(type(spec)), lambda s: None, lose_memory, Cancellation())
        assert code == 1
    failed = [(e.data["error_type"], e.data["message"]) for e in read_events(spec.events_path).events]
    # A rank other than 0 writes nothing else (rank 0 alone reports the run), but its failure it does write.
    assert failed == [("MemoryError", "rank 1 of 2: no host memory left"), ("MemoryError", "rank 0 of 2: no host memory left")]


def test_the_killed_rank_test_hook_is_parsed_or_refused() -> None:
    from trainer.run_control import KilledAtStep, injected_faults

    (fault,) = injected_faults({"FTAPP_TRAINER_FAULT": "sigkill_rank_at_step=1:3"})
    assert isinstance(fault, KilledAtStep) and (fault.rank, fault.step) == (1, 3)
    with pytest.raises(ValueError, match="sigkill_rank_at_step=R:N"):
        injected_faults({"FTAPP_TRAINER_FAULT": "sigkill_rank_at_step=1"})
