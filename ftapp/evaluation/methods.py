"""What an evaluation takes from the DPO and GRPO runs that trained its adapters, and EV-013.

A GRPO adapter is judged by the rewards it was trained for: without rewards in the request, an
evaluation whose adapters all come from GRPO runs with the same rewards scores every answer with
them. A DPO adapter's implicit reward is scaled by its run's beta. Both are read from the run's
stored spec. Evaluation rewards pass the checks a GRPO run's rewards pass (FT-018), custom Python
included: refused unless the app is local and unshared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftapp.errors import Problem
from ftapp.runs.method_request import reward_problems
from ftapp.settings import Settings
from storage import DatasetRecord, Transaction
from trainer.protocol import SPEC_FILE, RewardSpec

PREFERENCE = "preference"  # the dataset format whose rows are scored by likelihood, not generated


def training_spec(tx: Transaction, adapter_id: str | None) -> dict[str, Any] | None:
    """The spec of the run that trained the adapter (the run row's copy, else its spec.json); None when not trained here."""
    adapter = tx.adapters.get(adapter_id) if adapter_id else None
    run = tx.runs.get(adapter.run_id) if adapter and adapter.run_id else None
    if run is None:
        return None
    spec = _parsed(run.spec)
    if not spec and run.run_dir and (Path(run.run_dir) / SPEC_FILE).is_file():
        spec = _parsed((Path(run.run_dir) / SPEC_FILE).read_text(encoding="utf-8"))
    return spec or None


def _parsed(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def dpo_beta(tx: Transaction, adapter_id: str | None) -> float | None:
    """The beta of the DPO run that trained the adapter; None when it was not trained by DPO here."""
    spec = training_spec(tx, adapter_id)
    if not spec or spec.get("method") != "dpo":
        return None
    beta = (spec.get("method_settings") or {}).get("beta")
    return float(beta) if isinstance(beta, (int, float)) and not isinstance(beta, bool) else None


def grpo_rewards(tx: Transaction, adapter_ids: list[str]) -> tuple[RewardSpec, ...]:
    """The rewards every adapter was trained for by GRPO; () unless all of them were, with the same rewards."""
    found = set()
    for adapter_id in adapter_ids:
        spec = training_spec(tx, adapter_id)
        if not spec or spec.get("method") != "grpo" or not spec.get("rewards"):
            return ()
        found.add(json.dumps(spec["rewards"], sort_keys=True))
    if len(found) != 1:
        return ()
    try:
        return tuple(RewardSpec(**reward) for reward in json.loads(found.pop()))
    except TypeError:  # a spec from another protocol version: no default rather than a guess
        return ()


def evaluation_rewards(tx: Transaction, rewards: tuple | None, adapter_ids: list[str],
                       dataset: DatasetRecord | None) -> tuple:
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
        return [Problem("EV-013", f"dataset '{dataset.name}' holds preference pairs, which are scored by the likelihood of "
                                  "their chosen and rejected answers, not by rewards on generated answers: give no rewards",
                        "rewards")]
    return [Problem("EV-013", problem.message, problem.field) for problem in reward_problems("grpo", rewards, settings)]
