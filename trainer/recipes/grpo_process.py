"""``python -m trainer grpo SPEC_JSON``: one GRPO run (RL with verifiable rewards) as a process of the run contract.

Exit statuses and SIGTERM behave as for ``trainer.recipes.sft_process``. This module stays on the standard library,
so a spec that cannot run is refused before the ~10 s of ML imports; the recipe lives in
``trainer.recipes.grpo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import TrainSpec, read_spec
from trainer.protocol.rewards import CUSTOM_REWARD, REWARD_KINDS
from trainer.recipes.method_settings import REFERENCE_REWARDS, grpo_batch_problem, resolved_settings
from trainer.recipes.spec_checks import check_training_spec

ANSWER_FORMATS = ("alpaca", "messages", "sharegpt")  # DataSource formats whose rows carry their answer


def main(spec_path: str) -> NoReturn:
    run_process.main("grpo", spec_path, read_spec, check_spec, _train)


def _train(spec: TrainSpec, events, cancellation: Cancellation) -> bool:
    from trainer.recipes.grpo import run_grpo  # the ~10 s of ML imports start here

    return run_grpo(spec, events, cancellation)


def check_spec(spec: TrainSpec) -> None:
    """Refuse specs this verb cannot run, with the field to fix, before the expensive imports."""
    check_training_spec(spec, "grpo")
    if spec.data.format == "preference":
        raise ValueError("GRPO samples its own answers to prompts; preference data (chosen/rejected) trains with DPO")
    if not spec.rewards:
        raise ValueError("spec.rewards is empty: GRPO needs at least one reward to score completions with")
    for number, reward in enumerate(spec.rewards, start=1):
        if reward.kind not in REWARD_KINDS:
            raise ValueError(f"spec.rewards[{number}]: unknown kind {reward.kind!r}; expected one of {', '.join(REWARD_KINDS)}")
        if reward.kind == CUSTOM_REWARD and not (reward.code_path and Path(reward.code_path).is_file()):
            raise FileNotFoundError(f"spec.rewards[{number}]: custom reward file not found: {reward.code_path}")
        if reward.kind in REFERENCE_REWARDS and not _has_answers(spec):
            raise ValueError(
                f"spec.rewards[{number}]: {reward.kind} compares with each row's answer, but the data has "
                "none: give the prompt a completion_template (or use alpaca, messages or sharegpt data)"
            )
    settings = resolved_settings("grpo", spec.method_settings)
    problem = grpo_batch_problem(spec.training, settings, spec.num_processes)
    if problem:
        raise ValueError(problem)


def _has_answers(spec: TrainSpec) -> bool:
    # As trainer.data.training_data chooses: a prompt_template alone renders the whole row as one text.
    data = spec.data
    return bool(data.input_template and data.completion_template) or (not data.prompt_template and data.format in ANSWER_FORMATS)
