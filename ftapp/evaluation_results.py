"""An evaluation as people read it: one row per dataset row with every combination's answer, and
one line per combination with its metrics and their deltas against the baseline (position 1).

While the run is live, combinations without final aggregates show the running mean of their
per-row scores (``final`` False), so the table fills in as answers arrive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from storage import EvaluationAnswerRecord, EvaluationCombinationRecord, EvaluationScoreRecord, RunRecord

# Metrics where a smaller number is better; deltas of these are good when negative.
LOWER_IS_BETTER = frozenset({"perplexity", "latency_s"})


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
