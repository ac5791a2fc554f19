"""Evaluation use cases: check, submit (one supervised ``python -m trainer evaluate`` run), list, results."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ftapp.demo.live_runs import run_problems
from ftapp.demo.visitor import Visitor, visible_to
from ftapp.errors import ConflictError, Problem, ValidationError, require_found
from ftapp.evaluation.benchmarks import benchmark_spec
from ftapp.evaluation.judging import judge_spec
from ftapp.evaluation.methods import dpo_beta, evaluation_rewards
from ftapp.evaluation.request import EvaluationRequest, validate_evaluation
from ftapp.evaluation.results import EvaluationResults, build_results
from ftapp.evaluation.rows import RowChoice, choose_rows
from ftapp.ids import new_id
from ftapp.prompts.config_schemas import GenerationSettings
from ftapp.run_vocabulary import RunKind
from ftapp.runs.enqueue import enqueue
from ftapp.runs.fine_tune_request import config_values
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.method_request import reward_specs
from ftapp.runs.specs import data_source
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import Database, RunRecord, Transaction
from trainer.protocol import EvalCombination, EvaluationSpec, ModelSource


class EvaluationService:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor, visitor: Visitor | None = None):
        self.settings, self.db, self.supervisor = settings, visible_to(db, visitor), supervisor
        self.visitor, self.everyone = visitor, db  # the demo's caps count every visitor's runs

    def check(self, request: EvaluationRequest, machine: Machine | None = None) -> tuple[list[Problem], RowChoice | None]:
        """Every problem of the request, and the rows it would score when it has none."""
        caps = self.visitor.caps if self.visitor else None
        if caps and request.max_rows is None:  # a demo visitor's evaluation scores a sample (the rows come from here)
            request = replace(request, max_rows=caps.max_eval_rows)
        request = self._demo_benchmark_limit(request)
        busy = run_problems(self.everyone, self.visitor) if self.visitor else []
        with self.db.transaction() as tx:
            problems = validate_evaluation(tx, request, machine or detect_machine(), self.settings, caps)
            if problems:
                return problems + busy, None
            if not request.dataset_id:  # benchmarks alone
                return busy, RowChoice((), "no dataset rows: benchmark tasks only")
            rows, problems = choose_rows(tx, request, require_found(tx.datasets.get(request.dataset_id), "dataset", request.dataset_id))
            return problems + busy, rows

    def _demo_benchmark_limit(self, request: EvaluationRequest) -> EvaluationRequest:
        """A demo visitor's benchmark tasks score as many documents each as its evaluations score rows."""
        caps = self.visitor.caps if self.visitor else None
        if caps and request.has_benchmarks and request.benchmark_limit is None:
            return replace(request, benchmark_limit=caps.max_eval_rows)
        return request

    def submit(self, request: EvaluationRequest, machine: Machine | None = None) -> RunRecord:
        request = self._demo_benchmark_limit(request)
        problems, rows = self.check(request, machine)
        if problems or rows is None:
            raise ValidationError(problems)
        run_id = new_id()
        with self.db.transaction() as tx:
            spec = self._spec(tx, request, rows, run_id, self.settings.runs_dir / run_id)

        def add_combinations(tx: Transaction, run: RunRecord) -> None:
            for combo, resolved in zip(request.combinations, spec.combinations):
                tx.evaluation_combinations.add(
                    run_id=run.id,
                    position=resolved.position,
                    label=resolved.label,
                    model_id=combo.model_id,
                    adapter_id=combo.adapter_id or None,
                )

        return enqueue(
            self.db,
            self.supervisor,
            spec,
            kind=RunKind.EVALUATION,
            name=f"evaluate {' vs '.join(c.label for c in spec.combinations)}"[:200],
            also=add_combinations,
            base_model_id=request.combinations[0].model_id,
            dataset_id=request.dataset_id or None,
            prompt_id=request.prompt_id or None,
            adapter_id=next((c.adapter_id for c in request.combinations if c.adapter_id), None),
            devices_requested=request.gpus,
            total_steps=len(rows.indices) * len(spec.combinations),
        )

    def _spec(self, tx: Transaction, request: EvaluationRequest, rows: RowChoice, run_id: str, run_dir: Path) -> EvaluationSpec:
        dataset = tx.datasets.get(request.dataset_id) if request.dataset_id else None  # None: benchmarks alone
        prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None  # optional for conversational and preference rows
        assert dataset is not None or request.has_benchmarks, "validate the request first"
        combinations, labels = [], set()
        for position, combo in enumerate(request.combinations, start=1):
            model = tx.models.get(combo.model_id)
            adapter = tx.adapters.get(combo.adapter_id) if combo.adapter_id else None
            assert model is not None, "validate the request first"
            label = adapter.name if adapter else model.name
            if label in labels:  # the same combination twice: keep both columns apart
                label = f"{label} #{position}"
            labels.add(label)
            combinations.append(
                EvalCombination(
                    position,
                    label,
                    ModelSource(model.source, model.architecture),
                    adapter.location if adapter else None,
                    dpo_beta(tx, combo.adapter_id),
                )
            )
        generation = asdict(
            GenerationSettings(**{**config_values(tx, request.generation_config_id, "generation_config"), **request.generation})
        )
        return EvaluationSpec(
            run_id=run_id,
            run_dir=str(run_dir),
            combinations=tuple(combinations),
            data=data_source(dataset, prompt, fraction=1.0, train_split=1.0, seed=request.seed) if dataset else None,
            row_indices=rows.indices,
            rows_from=rows.described,
            generation=generation,
            seed=request.seed,
            batch_size=request.batch_size,
            rewards=reward_specs(evaluation_rewards(tx, request.rewards, request.adapter_ids, dataset)) if dataset else (),
            benchmark=benchmark_spec(request.benchmarks, request.benchmark_dir, request.benchmark_limit, request.benchmark_fewshot),
            judge=judge_spec(tx, request.judge),
            mlflow_tracking_uri=self.settings.mlflow_tracking_uri if self.settings.mlflow_enabled else None,
        )

    def list(self) -> list[RunRecord]:
        """Evaluation runs, newest first."""
        with self.db.transaction() as tx:
            return list(reversed(tx.runs.find(kind=RunKind.EVALUATION)))

    def results(self, run_id: str) -> EvaluationResults:
        with self.db.transaction() as tx:
            run = require_found(tx.runs.get(run_id), "run", run_id)
            if run.kind != RunKind.EVALUATION:
                raise ConflictError(f"run {run_id} is a {run.kind} run, not an evaluation")
            combinations = tx.evaluation_combinations.find(run_id=run_id)
            model_ids = {c.model_id for c in combinations if c.model_id}
            votes = [vote for model_id in model_ids for vote in tx.comparison_votes.find(model_id=model_id, blind=True)]
            return build_results(
                run,
                combinations,
                tx.evaluation_answers.find(run_id=run_id),
                tx.evaluation_scores.find(run_id=run_id),
                tx.evaluation_verdicts.find(run_id=run_id),
                votes,
            )
