"""The benchmark part of an evaluation run: its tasks loaded once, then scored group by group, then saved.

Scores travel in the combinations' ``eval`` events (stored, with deltas against #1, and in MLflow); every task
and group lm-eval scored, and its raw results per combination, go to ``output/benchmarks.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.evaluation.benchmark_lm import AdapterLM, SharedAnswers
from trainer.evaluation.benchmarks import LoadedTasks, evaluate_combination, lower_is_better, task_scores
from trainer.protocol import EvalCombination, EvaluationSpec

PHASE = "benchmark"  # progress events of this stage say so: their steps are lm-eval requests, not dataset rows


@dataclass
class BenchmarkStage:
    spec: EvaluationSpec
    tasks: LoadedTasks
    raw: dict[int, dict[str, Any]] = field(default_factory=dict)  # position -> lm-eval's results

    def score(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        combinations: list[EvalCombination],
        adapters: list[str],
        events: Any,
        progress: Any,
    ) -> dict[int, dict[str, float]]:
        """Every combination of one loaded model on every task: one shared pass of each batch for all of them."""
        assert self.spec.benchmark is not None
        shared = SharedAnswers(
            model,
            tokenizer,
            adapters,
            self.spec.batch_size,
            on_requests=progress.expect,
            on_answers=lambda count: progress.advance(events, count, phase=PHASE),
        )
        scores = {}
        for combo, adapter in zip(combinations, adapters):
            results = evaluate_combination(AdapterLM(shared, adapter), self.tasks, self.spec.benchmark, self.spec.seed)
            self.raw[combo.position] = results
            scores[combo.position] = task_scores(results, self.tasks)
        return scores

    def every_task_metrics(self) -> dict[str, float]:
        """``c<position>.bench/...`` for every task and group lm-eval scored, subtasks included (MLflow)."""
        return {
            f"c{position}.{name}": value
            for position, results in self.raw.items()
            for name, value in task_scores(results, self.tasks, every_task=True).items()
        }

    def lower_is_better(self) -> list[str]:
        return sorted({name for results in self.raw.values() for name in lower_is_better(results)})

    def save(self, path: Path) -> None:
        keep = ("results", "groups", "group_subtasks", "higher_is_better", "n-samples", "versions", "n-shot")
        path.write_text(
            json.dumps(
                {
                    "tasks": self.tasks.names,
                    "combinations": {str(position): {key: results.get(key) for key in keep} for position, results in self.raw.items()},
                },
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )
