"""An evaluation as people read it: one row per dataset row with every combination's answer, and
one line per combination with its metrics and their deltas against the baseline (position 1).

While the run is live, combinations without final aggregates show the running mean of their
per-row scores (``final`` False), so the table fills in as answers arrive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from storage import EvaluationAnswerRecord, EvaluationCombinationRecord, EvaluationScoreRecord, RunRecord
from trainer.protocol import REJECTED_DIVIDER

# Metrics where a smaller number is better; deltas of these are good when negative.
LOWER_IS_BETTER = frozenset({"perplexity", "latency_s"})
# What the metrics of preference pairs (DPO) and rewards (GRPO) mean, for the table's readers.
METRIC_HELP = {
    "preference_accuracy": "Share of pairs whose chosen answer is likelier than the rejected one (log p summed over the answer's tokens).",
    "mean_margin": "Mean of log p(chosen) - log p(rejected), in nats.",
    "mean_logp_chosen": "Mean log p(chosen answer | prompt), summed over its tokens. DPO often lowers it; what it widens is the margin.",
    "mean_logp_rejected": "Mean log p(rejected answer | prompt), summed over its tokens.",
    "reward_accuracy": "DPO's reward accuracy on held-out pairs: the share whose implicit reward "
                       "β·[(log p_c - ref_c) - (log p_r - ref_r)] is positive, with #1 as the reference policy (β leaves the sign alone).",
    "reward_margin": "Mean implicit DPO reward margin against #1, scaled by reward_beta.",
    "reward_beta": "The β of reward_margin: the beta of the DPO run that trained the adapter, or 1 when no DPO run of this app trained it.",
    "reward": "Mean reward of the generated answers: the weighted sum of the evaluation's rewards (GRPO's reward).",
    "reward_std": "Standard deviation of the reward over the answers.",
}


def metric_help(name: str) -> str | None:
    if name in METRIC_HELP:
        return METRIC_HELP[name]
    if name.startswith("reward/"):
        reward = name.removeprefix("reward/")
        if reward.endswith("/std"):
            return f"Standard deviation of the {reward.removesuffix('/std')} reward over the answers."
        return f"Mean {reward} reward of the generated answers (unweighted)."
    return None


@dataclass(frozen=True)
class CombinationResult:
    position: int
    label: str
    model_id: str | None
    adapter_id: str | None
    metrics: dict[str, float]
    deltas: dict[str, float]
    final: bool  # False: running means of the rows answered so far


@dataclass(frozen=True)
class AnswerRow:
    row_index: int
    input: str
    reference: str
    outputs: dict[int, str]  # position -> answer
    scores: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def pair(self) -> tuple[str, str] | None:
        """A preference row's (chosen, rejected) answers; None for a row with one reference answer."""
        chosen, divider, rejected = self.reference.partition(REJECTED_DIVIDER)
        return (chosen, rejected) if divider else None


@dataclass(frozen=True)
class EvaluationResults:
    run: RunRecord
    rows_from: str
    combinations: list[CombinationResult]
    rows: list[AnswerRow]  # ascending row_index
    answers: int  # answers stored so far (rows × combinations when complete)
    expected: int

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for combo in self.combinations:
            names.update(dict.fromkeys(combo.metrics))
        return list(names)


def build_results(run: RunRecord, combinations: list[EvaluationCombinationRecord], answers: list[EvaluationAnswerRecord],
                  scores: list[EvaluationScoreRecord]) -> EvaluationResults:
    spec = json.loads(run.spec or "{}")
    final: dict[int, dict[str, float]] = {}
    for score in scores:
        final.setdefault(score.position, {})[score.metric] = score.value
    running: dict[int, dict[str, list[float]]] = {}
    rows: dict[int, AnswerRow] = {}
    for answer in answers:
        row = rows.setdefault(answer.row_index, AnswerRow(answer.row_index, answer.input, answer.reference, {}, {}))
        row.outputs[answer.position] = answer.output
        row.scores[answer.position] = answer.score_values
        for name, value in answer.score_values.items():
            running.setdefault(answer.position, {}).setdefault(name, []).append(value)
    metrics = {c.position: final.get(c.position) or {k: sum(v) / len(v) for k, v in running.get(c.position, {}).items()}
               for c in combinations}
    baseline = metrics.get(1, {})
    results = [
        CombinationResult(
            c.position, c.label, c.model_id, c.adapter_id, metrics[c.position],
            {k: v - baseline[k] for k, v in metrics[c.position].items() if k in baseline} if c.position != 1 else {},
            c.position in final,
        )
        for c in sorted(combinations, key=lambda c: c.position)
    ]
    expected = len(spec.get("row_indices") or []) * len(combinations)
    return EvaluationResults(run, str(spec.get("rows_from", "")), results, [rows[i] for i in sorted(rows)], len(answers), expected)
