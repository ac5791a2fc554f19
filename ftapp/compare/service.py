"""The Compare playground: one prompt, a base model and up to four of its adapters, answers side by side.

Generation never happens in this process. Each base model gets one persistent inference worker, a
run of kind ``inference`` that the supervisor starts on a device the scheduler chose and that
exits after ``idle_timeout_s`` without a request (``trainer.inference.worker``). A comparison is a
request file in the worker's queue; its answer streams into a response file that ``follow``
tails, yielding a snapshot of every output so far. The file protocol is documented on
``trainer.protocol.InferenceSpec``. Votes (blind or not) go to ``comparison_votes``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ftapp import rules
from ftapp.compare.request import (
    CompareRequest,
    adapter_source,
    resolved_generation,
    validate_compare,
    validate_sample,
    validate_vote,
)
from ftapp.datasets.service import DatasetService
from ftapp.demo.live_runs import worker_problems
from ftapp.demo.visitor import Visitor, visible_to
from ftapp.errors import ConflictError, FtappError, Problem, ValidationError
from ftapp.ids import new_id
from ftapp.prompts.templates import render
from ftapp.run_vocabulary import TERMINAL, RunKind, RunStatus
from ftapp.runs.enqueue import enqueue
from ftapp.runs.outcome import started_payload
from ftapp.runs.specs import run_spec
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import AdapterRecord, ComparisonVoteRecord, Database, DuplicateError, ModelRecord, RunRecord
from trainer.protocol import (
    REQUESTS_DIR,
    RESPONSES_DIR,
    InferenceRequest,
    InferenceSpec,
    InferenceTarget,
    ModelSource,
    write_json_atomically,
)

DEFAULT_IDLE_TIMEOUT_S = 600.0
ANSWER_TIMEOUT_S = 900.0  # model start-up (minutes for a large one) plus the answer itself
STATUS_EVERY_S = 0.5  # how often a waiting stream looks at the worker's run row
BLIND_LABELS = "ABCDE"
QUEUED, LOADING, WAITING, GENERATING, DONE = RunStatus.QUEUED, "loading", "waiting", "generating", "done"
# One per process: two pages asking at once (each demo visitor's services are built afresh for every request)
# must not start two workers for one model.
_WORKER_START = threading.Lock()


class ComparisonFailed(FtappError):
    """The worker could not answer: it failed, was stopped, or refused this request."""


@dataclass(frozen=True)
class Candidate:
    label: str  # what the page shows: the target's name, or A/B/... in blind mode
    name: str  # the base model's or the adapter's name (hidden in blind mode until the vote)
    adapter_id: str | None  # None: the base model alone


@dataclass(frozen=True)
class Comparison:
    """A request on its way: what was asked, in which order the outputs are shown, where they arrive."""

    request_id: str
    model_id: str
    model_name: str
    prompt: str
    chat: bool
    generation: dict[str, Any]
    seed: int
    blind: bool
    candidates: tuple[Candidate, ...]
    worker_run_id: str
    response_path: str
    order_seed: int | None = None  # the blind shuffle's seed, kept with the vote

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.candidates)


@dataclass(frozen=True)
class CompareSnapshot:
    """Every output so far; ``phase`` says what the worker is doing (queued, loading, waiting, generating, done)."""

    comparison: Comparison
    texts: tuple[str, ...]
    phase: str
    step: int = 0
    new_tokens: tuple[int, ...] = ()
    seconds: float | None = None
    tokens_per_s: float | None = None

    @property
    def done(self) -> bool:
        return self.phase == DONE


@dataclass(frozen=True)
class Worker:
    run_id: str
    model_id: str
    status: str  # queued | running
    ready: bool  # the model is loaded
    devices: str  # "cpu", GPU ids, or what was requested while queued
    device_name: str | None
    idle_timeout_s: float
    served: int
    last_active: float | None  # epoch seconds of the last answer (or of loading the model)


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
        self.idle_timeout_s, self.devices, self.cpu_threads = idle_timeout_s, devices, cpu_threads
        self.answer_timeout_s, self.poll_s = answer_timeout_s, poll_s
        self.visitor, self.everyone = visitor, db  # the demo's cap on workers counts every visitor's

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
        candidates, order_seed = _candidates(model, [a for a in adapters if a], request)
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
        worker = self._queue(model, request_id, payload)
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

    def _queue(self, model: ModelRecord, request_id: str, payload: dict[str, Any]) -> RunRecord:
        """Write the request into a live worker's queue, starting a worker when there is none."""
        for _ in range(3):
            with _WORKER_START:
                worker = self._live_worker(model.id) or self._start_worker(model)
            try:
                write_json_atomically(Path(worker.run_dir or "") / REQUESTS_DIR / f"{request_id}.json", payload)
                return worker
            except FileNotFoundError:
                continue  # it closed its queue (idle timeout) a moment ago; the next one will not have
        raise ComparisonFailed("could not hand the request to an inference worker; try again")

    def _live_worker(self, model_id: str) -> RunRecord | None:
        """The model's queued or running worker that still takes requests (its queue folder exists)."""
        for run in self._live_runs(model_id):
            if (Path(run.run_dir or "") / REQUESTS_DIR).is_dir():
                return run
        return None

    def _live_runs(self, model_id: str | None = None) -> list[RunRecord]:
        with self.db.transaction() as tx:
            runs = tx.runs.find(kind=RunKind.INFERENCE)
        return [
            r
            for r in runs
            if r.status not in TERMINAL and r.cancel_requested_at is None and (model_id is None or r.base_model_id == model_id)
        ]

    def _start_worker(self, model: ModelRecord) -> RunRecord:
        # Each demo visitor's Compare tab has its own worker (a process holding the model): bound how many live at once.
        busy = worker_problems(self.everyone, self.visitor) if self.visitor else []
        if busy:
            raise ValidationError(busy)
        run_id = new_id()
        # On a CPU, one core stays with the app: torch's spinning threads slow down many times over
        # when the page's streaming competes with them for every core.
        threads = self.cpu_threads or max(1, (os.cpu_count() or 2) - 1)
        spec = InferenceSpec(
            run_id=run_id,
            run_dir=str(self.settings.runs_dir / run_id),
            model=ModelSource(model.source, model.architecture),
            idle_timeout_s=self.idle_timeout_s,
            cpu_threads=threads,
        )
        # The queue exists before the worker does: requests wait there while it starts and loads.
        return enqueue(
            self.db,
            self.supervisor,
            spec,
            kind=RunKind.INFERENCE,
            name=f"compare · {model.name}",
            prepare=lambda run_dir: (run_dir / REQUESTS_DIR).mkdir(),
            base_model_id=model.id,
            devices_requested=self.devices,
        )

    def follow(self, comparison: Comparison) -> Iterator[CompareSnapshot]:
        """Snapshots as the answer streams in; the last one is ``done``. Raises ComparisonFailed."""
        tail = _Tail(Path(comparison.response_path))
        snapshot = CompareSnapshot(comparison, ("",) * len(comparison.candidates), QUEUED)
        deadline = time.monotonic() + self.answer_timeout_s
        next_look = 0.0
        while True:
            updated = _apply(snapshot, tail.read())
            now = time.monotonic()
            if not updated.done and now >= next_look:
                next_look = now + STATUS_EVERY_S
                with self.db.transaction() as tx:
                    run = tx.runs.get(comparison.worker_run_id)
                if run is None or run.status in TERMINAL:
                    updated = _apply(updated, tail.read())  # it may have answered just before it exited
                    if not updated.done:
                        raise ComparisonFailed(_worker_gone(run))
                elif updated.phase != GENERATING:
                    updated = replace(updated, phase=_waiting_phase(run, tail.accepted))
            if updated != snapshot or updated.done:
                snapshot = updated
                yield snapshot
            if snapshot.done:
                return
            if now > deadline:
                raise ComparisonFailed(
                    f"no answer within {self.answer_timeout_s:.0f} s; see the worker run {comparison.worker_run_id} in the Runs tab"
                )
            time.sleep(self.poll_s)

    # -- workers ------------------------------------------------------------------------------------
    def workers(self) -> list[Worker]:
        return [_worker_view(run) for run in self._live_runs()]

    def worker(self, model_id: str) -> Worker | None:
        found = [_worker_view(run) for run in self._live_runs(model_id)]
        return found[-1] if found else None

    def stop_worker(self, model_id: str) -> list[RunRecord]:
        """Cancel the model's workers (SIGTERM; the runs end cancelled); empty when none was running."""
        return [self.supervisor.cancel(run.id) for run in self._live_runs(model_id)]

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


def _candidates(model: ModelRecord, adapters: list[AdapterRecord], request: CompareRequest) -> tuple[tuple[Candidate, ...], int | None]:
    """The outputs in shown order; blind mode shuffles them (a fresh seed each time) and names them A, B, ..."""
    base = [Candidate(f"{model.name} (base)", f"{model.name} (base)", None)] if request.include_base else []
    shown = base + [Candidate(a.name, a.name, a.id) for a in adapters]
    if not request.blind:
        return tuple(shown), None
    # Not the generation seed: re-running one prompt and seed must not repeat the order, or it is not blind.
    order_seed = secrets.randbelow(2**31)
    random.Random(order_seed).shuffle(shown)
    return tuple(replace(c, label=BLIND_LABELS[i]) for i, c in enumerate(shown)), order_seed


class _Tail:
    """The complete lines a response file gained since the last read; an error line raises ComparisonFailed."""

    def __init__(self, path: Path):
        self.path, self.offset, self.accepted = path, 0, False

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # a line being written: wait for its newline
        self.offset += end + 1
        lines = [json.loads(raw) for raw in chunk[: end + 1].splitlines() if raw.strip()]
        for line in lines:
            self.accepted = self.accepted or bool(line.get("accepted"))
            if "error" in line:
                raise ComparisonFailed(f"the worker could not answer: {line.get('error_type', 'error')}: {line['error']}")
        return lines


def _apply(snapshot: CompareSnapshot, lines: list[dict[str, Any]]) -> CompareSnapshot:
    for line in lines:
        if line.get("done"):
            return replace(
                snapshot,
                texts=tuple(line["texts"]),
                phase=DONE,
                new_tokens=tuple(line["new_tokens"]),
                seconds=line.get("seconds"),
                tokens_per_s=line.get("tokens_per_s"),
            )
        if "texts" in line:
            snapshot = replace(snapshot, texts=tuple(line["texts"]), phase=GENERATING, step=int(line.get("step", 0)))
    return snapshot


def _worker_gone(run: RunRecord | None) -> str:
    if run is None:
        return "the inference worker's run was removed"
    if run.status == RunStatus.CANCELLED:
        return "the inference worker was stopped before it answered"
    if run.status == RunStatus.FAILED:
        summary = (run.error_text or "no error text").split("\n--- log tail ---\n")[0].strip()
        return f"the inference worker failed ({run.error_cause or 'unknown cause'}): {summary}"
    return "the inference worker exited without answering; generate again to start a new one"


def _waiting_phase(run: RunRecord, accepted: bool) -> str:
    """What a request that is not generating yet waits for."""
    if accepted:
        return LOADING  # the worker took it and is attaching adapters
    if run.status == RunStatus.QUEUED:
        return QUEUED  # for a device
    # behind another request, or for the model to load
    return WAITING if run.started_payload is not None else LOADING


def _worker_view(run: RunRecord) -> Worker:
    """A live worker as its row shows it: ready once it said started; last active at its last event (a worker writes
    ``started`` when the model is loaded and ``progress`` after each answer, nothing else while it lives)."""
    started = started_payload(run)
    device_name = started.get("device_name") if started else None
    spec = run_spec(run, InferenceSpec)  # a live worker: this app wrote its row
    return Worker(
        run.id,
        run.base_model_id or "",
        run.status,
        started is not None,
        run.gpus or run.devices_requested,
        str(device_name) if device_name is not None else None,
        spec.idle_timeout_s,
        run.step or 0,
        run.last_event_at.timestamp() if started is not None and run.last_event_at else None,
    )
