"""``python -m trainer sft SPEC_JSON``: one supervised fine-tuning run as a process of the run contract.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once before training and after a
checkpoint during it. This module stays on the standard library: a spec that cannot run (QLoRA on
CPU, a missing dataset) is refused before torch, transformers and peft are imported, which takes
~10 s. The recipe itself lives in ``trainer.recipes.sft``.
"""

from __future__ import annotations

from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import TrainSpec, read_spec
from trainer.recipes.spec_checks import check_training_spec


def main(spec_path: str) -> NoReturn:
    run_process.main("sft", spec_path, read_spec, check_spec, _train)


def _train(spec: TrainSpec, events, cancellation: Cancellation) -> bool:
    from trainer.recipes.sft import run_sft  # the ~10 s of ML imports start here

    return run_sft(spec, events, cancellation)


def check_spec(spec: TrainSpec) -> None:
    """Refuse specs this verb cannot run, with the field to fix, before the expensive imports."""
    check_training_spec(spec, "sft")
