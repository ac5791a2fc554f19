"""``python -m trainer evaluate SPEC_JSON``: answer and score held-out rows with N model/adapter combinations.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once (a half-scored evaluation has
nothing worth keeping). A spec that cannot run is refused before torch is imported. The recipe
lives in ``trainer.evaluation.recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import EvaluationSpec, check_device
from trainer.recipes.rewards import scorer_for


def main(spec_path: str) -> NoReturn:
    run_process.main("evaluate", spec_path, run_process.spec_reader(EvaluationSpec), check_spec, _evaluate)


def _evaluate(spec: EvaluationSpec, events, cancellation: Cancellation) -> bool:
    from trainer.evaluation.recipe import run_evaluation  # the ML imports start here

    return run_evaluation(spec, events)


def check_spec(spec: EvaluationSpec) -> None:
    if not spec.combinations:
        raise ValueError("spec.combinations is empty: nothing to evaluate")
    if [c.position for c in spec.combinations] != list(range(1, len(spec.combinations) + 1)):
        raise ValueError("spec.combinations must be numbered 1..N in order (1 is the baseline)")
    if not spec.row_indices:
        raise ValueError("spec.row_indices is empty: no rows to evaluate")
    check_device(spec.device)
    if spec.data.kind != "huggingface" and spec.data.path and not Path(spec.data.path).exists():
        raise FileNotFoundError(f"dataset not found: {spec.data.path}")
    for combo in spec.combinations:
        if combo.adapter_path and not Path(combo.adapter_path).exists():
            raise FileNotFoundError(f"combination {combo.position} ({combo.label}): adapter not found at {combo.adapter_path}")
    if spec.rewards and spec.data.format == "preference":
        raise ValueError("rewards score generated answers, and preference pairs are scored by likelihood: give no rewards")
    for reward in spec.rewards:
        scorer_for(reward)  # a bad pattern or a missing custom file fails here, before any model loads
