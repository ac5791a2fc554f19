"""What an evaluation takes from the DPO and GRPO runs that trained its adapters, and EV-013.

A GRPO adapter is judged by the rewards it was trained for: without rewards in the request, an
evaluation whose adapters all come from GRPO runs with the same rewards scores every answer with
them. A DPO adapter's implicit reward is scaled by its run's beta. Both are read from the run's
stored spec. Evaluation rewards pass the checks a GRPO run's rewards pass (FT-018), custom Python
included: refused unless the app is local and unshared.
"""

from __future__ import annotations

from pathlib import Path

from ftapp import rules
from ftapp.errors import Problem
from ftapp.runs.method_request import reward_problems
from ftapp.runs.specs import UnreadableSpecError, run_spec
from ftapp.settings import Settings
from storage import DatasetRecord, Transaction
from trainer.protocol import SPEC_FILE, RewardSpec, TrainSpec, read_spec

PREFERENCE = "preference"  # the dataset format whose rows are scored by likelihood, not generated


def training_spec(tx: Transaction, adapter_id: str | None) -> TrainSpec | None:
    """The spec of the run that trained the adapter (the run row's copy, else its spec.json); None when it was not trained
    here, or neither reads as this version's spec: no default rather than a guess."""
    adapter = tx.adapters.get(adapter_id) if adapter_id else None
    run = tx.runs.get(adapter.run_id) if adapter and adapter.run_id else None
    if run is None:
        return None
    try:
        return run_spec(run, TrainSpec)
    except UnreadableSpecError:
        pass
    path = Path(run.run_dir) / SPEC_FILE if run.run_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return read_spec(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def dpo_beta(tx: Transaction, adapter_id: str | None) -> float | None:
    """The beta of the DPO run that trained the adapter; None when it was not trained by DPO here."""
    spec = training_spec(tx, adapter_id)
    if spec is None or spec.method != "dpo":
        return None
    beta = spec.method_settings.get("beta")
    return float(beta) if isinstance(beta, (int, float)) and not isinstance(beta, bool) else None


def grpo_rewards(tx: Transaction, adapter_ids: list[str]) -> tuple[RewardSpec, ...]:
    """The rewards every adapter was trained for by GRPO; () unless all of them were, with the same rewards."""
    shared: tuple[RewardSpec, ...] = ()
    for adapter_id in adapter_ids:
        spec = training_spec(tx, adapter_id)
        if spec is None or spec.method != "grpo" or not spec.rewards or (shared and spec.rewards != shared):
            return ()
        shared = spec.rewards
    return shared


def evaluation_rewards(tx: Transaction, rewards: tuple | None, adapter_ids: list[str], dataset: DatasetRecord | None) -> tuple:
    """The rewards an evaluation scores answers with: the request's, else its GRPO adapters' (none for preference data)."""
    if rewards is not None:
        return tuple(rewards)
    if dataset is not None and dataset.format == PREFERENCE:
        return ()
    return grpo_rewards(tx, adapter_ids)


def evaluation_reward_problems(rewards: tuple, dataset: DatasetRecord | None, settings: Settings | None) -> list[Problem]:
    """EV-013: FT-018's checks of each reward, and no rewards for preference pairs."""
    if not rewards:
        return []
    if dataset is not None and dataset.format == PREFERENCE:
        return [
            Problem(
                rules.EVAL_REWARDS,
                f"dataset '{dataset.name}' holds preference pairs, which are scored by the likelihood of "
                "their chosen and rejected answers, not by rewards on generated answers: give no rewards",
                "rewards",
            )
        ]
    return [Problem(rules.EVAL_REWARDS, problem.message, problem.field) for problem in reward_problems("grpo", rewards, settings)]
