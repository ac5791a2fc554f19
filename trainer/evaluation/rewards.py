"""Generated answers scored with verifiable rewards (a GRPO run's), per answer and per combination.

Per answer: ``reward`` (the weighted sum) and ``reward/<name>`` for each reward, from
``trainer.recipes.rewards.score_completions`` against the row's reference. Per combination: their means
under the same names and their spread over the answers as ``reward_std`` and ``reward/<name>/std``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from trainer.protocol import RewardSpec
from trainer.recipes.rewards import TOTAL, score_completions


def reward_scores(
    rewards: Sequence[RewardSpec], outputs: Sequence[str], references: Sequence[str | None], rows: Sequence[dict[str, Any]]
) -> list[dict[str, float]]:
    """Per answer, ``reward`` and ``reward/<name>`` of each reward."""
    scored = score_completions(rewards, outputs, references, rows)
    names = [name for name in scored if name != TOTAL]
    return [{TOTAL: float(scored[TOTAL][k]), **{f"{TOTAL}/{name}": float(scored[name][k]) for name in names}} for k in range(len(outputs))]


def reward_aggregates(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Means of the answers' rewards, and their population standard deviations."""
    if not rows:
        return {}
    result: dict[str, float] = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        result[name] = statistics.fmean(values)
        result[f"{TOTAL}_std" if name == TOTAL else f"{name}/std"] = statistics.pstdev(values)
    return result
