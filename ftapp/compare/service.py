"""The Compare playground's service: one prompt, a base model and up to four of its adapters, answers side by side.

What ``ui`` and ``cli`` call: the choices a page offers, starting a comparison and following its answers
(``answers``), the base models' inference workers (``workers``), and the votes cast on finished comparisons
(blind or not), stored in ``comparison_votes``. Generation never happens in this process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ftapp import rules
from ftapp.compare.answers import ANSWER_TIMEOUT_S, CompareSnapshot, Comparison, follow_answers, shown_candidates
from ftapp.compare.request import (
    CompareRequest,
    adapter_source,
    resolved_generation,
    validate_compare,
    validate_sample,
    validate_vote,
)
from ftapp.compare.workers import DEFAULT_IDLE_TIMEOUT_S, InferenceWorkers, Worker
from ftapp.datasets.service import DatasetService
from ftapp.demo.visitor import Visitor, visible_to
from ftapp.errors import ConflictError, Problem, ValidationError
from ftapp.ids import new_id
from ftapp.prompts.templates import render
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import AdapterRecord, ComparisonVoteRecord, Database, DuplicateError, RunRecord
from trainer.protocol import RESPONSES_DIR, InferenceRequest, InferenceTarget


@dataclass(frozen=True)
class Vote:
    record: ComparisonVoteRecord
    reveal: dict[str, str] = field(default_factory=dict)  # shown label → base model or adapter name


class ComparisonService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        datasets: DatasetService,
        supervisor: Supervisor,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        devices: str = "auto",
        cpu_threads: int | None = None,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        poll_s: float = 0.05,
        visitor: Visitor | None = None,
    ):
        self.settings, self.db, self.datasets, self.supervisor = settings, visible_to(db, visitor), datasets, supervisor
        self.answer_timeout_s, self.poll_s = answer_timeout_s, poll_s
        # ``everyone=db``: the demo's cap on workers counts every visitor's
        self.inference_workers = InferenceWorkers(
            settings, self.db, supervisor, idle_timeout_s, devices, cpu_threads, visitor=visitor, everyone=db
        )

    # -- choices ------------------------------------------------------------------------------------
    def adapters_for(self, model_id: str) -> list[AdapterRecord]:
        """The adapters trained on this base model: the only ones it can carry."""
        with self.db.transaction() as tx:
            return tx.adapters.find(model_id=model_id) if model_id else []

    def sample_prompt(self, dataset_id: str, prompt_id: str, row_index: int) -> str:
        """A dataset row rendered through the prompt's input template, as training saw it."""
        with self.db.transaction() as tx:
            problems = validate_sample(tx, dataset_id, prompt_id, row_index)
            dataset, prompt = tx.datasets.get(dataset_id), tx.prompts.get(prompt_id)
        if problems:
            raise ValidationError(problems)
        assert dataset is not None and prompt is not None
        rows = self.datasets.read_rows(dataset, row_index, 1)
        if not rows:
            raise ValidationError(Problem(rules.SAMPLE_ROW, f"row {row_index} is past the end of '{dataset.name}'", "row_index"))
        # Training moved the template's trailing spaces into the completion (see
        # trainer.data.training_data.prompt_at_token_boundary); a prompt ending in them is one the adapter never saw.
        return render(prompt.input_template, rows[0]).rstrip(" ")

    # -- generating ---------------------------------------------------------------------------------
    def generate(self, request: CompareRequest) -> Iterator[CompareSnapshot]:
        """``start`` then ``follow``: snapshots until every output is finished."""
        return self.follow(self.start(request))

    def start(self, request: CompareRequest) -> Comparison:
        """Validate, make sure a worker for the base model is queued or running, and queue the request."""
        with self.db.transaction() as tx:
            problems = validate_compare(tx, request)
            if problems:
                raise ValidationError(problems)
            model = tx.models.get(request.model_id)
            adapters = [tx.adapters.get(a) for a in request.adapter_ids]
        assert model is not None and all(adapters)
        candidates, order_seed = shown_candidates(model, [a for a in adapters if a], request)
        sources = {a.id: adapter_source(a) for a in adapters if a}
        request_id = new_id()
        generation = resolved_generation(request)
        payload = InferenceRequest(
            request_id=request_id,
            prompt=[{"role": "user", "content": request.prompt}] if request.chat else request.prompt,
            targets=tuple(InferenceTarget(c.label, sources[c.adapter_id] if c.adapter_id else None) for c in candidates),
            generation=generation,
            seed=request.seed,
        ).to_dict()
        worker = self.inference_workers.queue_request(model, request_id, payload)
        return Comparison(
            request_id,
            model.id,
            model.name,
            request.prompt,
            request.chat,
            generation,
            request.seed,
            request.blind,
            candidates,
            worker.id,
            str(Path(worker.run_dir or "") / RESPONSES_DIR / f"{request_id}.jsonl"),
            order_seed,
        )

    def follow(self, comparison: Comparison) -> Iterator[CompareSnapshot]:
        """Snapshots as the answer streams in; the last one is ``done``. Raises ComparisonFailed."""
        yield from follow_answers(self.db, comparison, self.answer_timeout_s, self.poll_s)

    # -- workers ------------------------------------------------------------------------------------
    def workers(self) -> list[Worker]:
        return self.inference_workers.list_live()

    def worker(self, model_id: str) -> Worker | None:
        return self.inference_workers.find_live(model_id)

    def stop_worker(self, model_id: str) -> list[RunRecord]:
        """Cancel the model's workers (SIGTERM; the runs end cancelled); empty when none was running."""
        return self.inference_workers.stop(model_id)

    # -- votes --------------------------------------------------------------------------------------
    def vote(self, snapshot: CompareSnapshot, winner: str) -> Vote:
        """Store which output won (or ``tie``), with every candidate in the order shown; reveals blind labels."""
        comparison = snapshot.comparison
        problems = validate_vote(comparison.labels, winner, snapshot.done)
        if problems:
            raise ValidationError(problems)
        candidates = [
            {"label": c.label, "name": c.name, "adapter_id": c.adapter_id, "output": text}
            for c, text in zip(comparison.candidates, snapshot.texts)
        ]
        settings = {**comparison.generation, "seed": comparison.seed, "chat": comparison.chat, "order_seed": comparison.order_seed}
        try:
            with self.db.transaction() as tx:
                # The vote's id is the comparison's: a second vote on it is refused by the database itself.
                record = tx.comparison_votes.add(
                    id=comparison.request_id,
                    model_id=comparison.model_id,
                    prompt=comparison.prompt,
                    settings=json.dumps(settings),
                    candidates=json.dumps(candidates),
                    blind=comparison.blind,
                    winner=winner,
                )
        except DuplicateError as error:
            raise ConflictError("this comparison has its vote already; generate again to vote again") from error
        return Vote(record, {c.label: c.name for c in comparison.candidates})

    def votes(self, model_id: str | None = None) -> list[ComparisonVoteRecord]:
        with self.db.transaction() as tx:
            return tx.comparison_votes.find(model_id=model_id) if model_id else tx.comparison_votes.list()
