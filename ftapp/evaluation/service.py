"""Evaluation use cases: check, submit (one supervised ``python -m trainer evaluate`` run), list, results."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from ftapp.errors import ConflictError, Problem, ValidationError, require_found
from ftapp.evaluation.methods import dpo_beta, evaluation_rewards
from ftapp.evaluation.request import EvaluationRequest, validate_evaluation
from ftapp.evaluation.results import EvaluationResults, build_results
from ftapp.evaluation.rows import RowChoice, choose_rows
from ftapp.ids import new_id
from ftapp.prompts.config_schemas import GenerationSettings
from ftapp.run_vocabulary import RunStatus
from ftapp.runs.fine_tune_request import config_values
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.method_request import reward_specs
from ftapp.runs.specs import data_source
from ftapp.runs.supervisor import EVALUATION, Supervisor
from ftapp.settings import Settings
from storage import Database, RunRecord, Transaction
from trainer.protocol import LOG_FILE, EvalCombination, EvaluationSpec, ModelSource, write_spec


class EvaluationService:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor):
        self.settings, self.db, self.supervisor = settings, db, supervisor

    def check(self, request: EvaluationRequest, machine: Machine | None = None) -> tuple[list[Problem], RowChoice | None]:
        """Every problem of the request, and the rows it would score when it has none."""
        with self.db.transaction() as tx:
            problems = validate_evaluation(tx, request, machine or detect_machine(), self.settings)
            if problems:
                return problems, None
            rows, problems = choose_rows(tx, request, require_found(tx.datasets.get(request.dataset_id), "dataset", request.dataset_id))
            return problems, rows

    def submit(self, request: EvaluationRequest, machine: Machine | None = None) -> RunRecord:
        problems, rows = self.check(request, machine)
        if problems or rows is None:
            raise ValidationError(problems)
        run_id = new_id()
        run_dir = self.settings.runs_dir / run_id
        with self.db.transaction() as tx:
            spec = self._spec(tx, request, rows, run_id, run_dir)
        run_dir.mkdir(parents=True)
        try:
            write_spec(spec)
            with self.db.transaction() as tx:
                first = request.combinations[0]
                run = tx.runs.add(
                    id=run_id, kind=EVALUATION, name=f"evaluate {' vs '.join(c.label for c in spec.combinations)}"[:200],
                    status=RunStatus.QUEUED, spec=json.dumps(spec.to_dict()), run_dir=str(run_dir), log_path=str(run_dir / LOG_FILE),
                    base_model_id=first.model_id, dataset_id=request.dataset_id, prompt_id=request.prompt_id or None,
                    adapter_id=next((c.adapter_id for c in request.combinations if c.adapter_id), None),
                    devices_requested=request.gpus, total_steps=len(rows.indices) * len(spec.combinations),
                )
                for combo, resolved in zip(request.combinations, spec.combinations):
                    tx.evaluation_combinations.add(run_id=run_id, position=resolved.position, label=resolved.label,
                                                   model_id=combo.model_id, adapter_id=combo.adapter_id or None)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        self.supervisor.wake()
        return run

    def _spec(self, tx: Transaction, request: EvaluationRequest, rows: RowChoice, run_id: str, run_dir: Path) -> EvaluationSpec:
        dataset = tx.datasets.get(request.dataset_id)
        prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None  # optional for conversational and preference rows
        assert dataset is not None, "validate the request first"
        combinations, labels = [], set()
        for position, combo in enumerate(request.combinations, start=1):
            model = tx.models.get(combo.model_id)
            adapter = tx.adapters.get(combo.adapter_id) if combo.adapter_id else None
            assert model is not None, "validate the request first"
            label = adapter.name if adapter else model.name
            if label in labels:  # the same combination twice: keep both columns apart
                label = f"{label} #{position}"
            labels.add(label)
            combinations.append(EvalCombination(position, label, ModelSource(model.source, model.architecture),
                                                adapter.location if adapter else None, dpo_beta(tx, combo.adapter_id)))
        generation = asdict(GenerationSettings(**{**config_values(tx, request.generation_config_id, "generation_config"),
                                                  **request.generation}))
        return EvaluationSpec(
            run_id=run_id, run_dir=str(run_dir), combinations=tuple(combinations),
            data=data_source(dataset, prompt, fraction=1.0, train_split=1.0, seed=request.seed),
            row_indices=rows.indices, rows_from=rows.described, generation=generation, seed=request.seed,
            batch_size=request.batch_size,
            rewards=reward_specs(evaluation_rewards(tx, request.rewards, request.adapter_ids, dataset)),
            mlflow_tracking_uri=self.settings.mlflow_tracking_uri if self.settings.mlflow_enabled else None,
        )

    def list(self) -> list[RunRecord]:
        """Evaluation runs, newest first."""
        with self.db.transaction() as tx:
            return list(reversed(tx.runs.find(kind=EVALUATION)))

    def results(self, run_id: str) -> EvaluationResults:
        with self.db.transaction() as tx:
            run = require_found(tx.runs.get(run_id), "run", run_id)
            if run.kind != EVALUATION:
                raise ConflictError(f"run {run_id} is a {run.kind} run, not an evaluation")
            return build_results(run, tx.evaluation_combinations.find(run_id=run_id),
                                 tx.evaluation_answers.find(run_id=run_id), tx.evaluation_scores.find(run_id=run_id))
