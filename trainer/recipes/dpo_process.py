"""``python -m trainer dpo SPEC_JSON``: one DPO run (preference pairs) as a process of the run contract.

Exit statuses and SIGTERM behave as for ``trainer.recipes.sft_process``. This module stays on the standard library,
so a spec that cannot run is refused before the ~10 s of ML imports; the recipe lives in
``trainer.recipes.dpo``.
"""

from __future__ import annotations

from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import TrainSpec, read_spec
from trainer.recipes.method_settings import resolved_settings
from trainer.recipes.spec_checks import check_training_spec


def main(spec_path: str) -> NoReturn:
    run_process.main("dpo", spec_path, read_spec, check_spec, _train)


def _train(spec: TrainSpec, events, cancellation: Cancellation) -> bool:
    from trainer.recipes.dpo import run_dpo  # the ~10 s of ML imports start here

    return run_dpo(spec, events, cancellation)


def check_spec(spec: TrainSpec) -> None:
    """Refuse specs this verb cannot run, with the field to fix, before the expensive imports."""
    check_training_spec(spec, "dpo")
    if spec.data.format != "preference":
        raise ValueError(
            f"DPO trains on preference data (prompt, chosen, rejected): spec.data.format is {spec.data.format!r}, expected 'preference'"
        )
    if spec.rewards:
        raise ValueError("spec.rewards are GRPO's; a DPO run learns from the chosen/rejected pairs")
    resolved_settings("dpo", spec.method_settings)
