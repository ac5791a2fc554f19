"""A comparison's answers: the outputs in the order shown (blind mode shuffles and letters them), and the worker's
response file tailed into a snapshot of every output so far.

The worker streams each answer into ``responses/<request id>.jsonl``; the file protocol is documented on
``trainer.protocol.InferenceSpec``.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ftapp.compare.request import CompareRequest
from ftapp.errors import FtappError
from ftapp.run_vocabulary import TERMINAL, RunStatus
from ftapp.runs.log_text import failure_summary
from storage import AdapterRecord, Database, ModelRecord, RunRecord

ANSWER_TIMEOUT_S = 900.0  # model start-up (minutes for a large one) plus the answer itself
STATUS_EVERY_S = 0.5  # how often a waiting stream looks at the worker's run row
BLIND_LABELS = "ABCDE"
QUEUED, LOADING, WAITING, GENERATING, DONE = RunStatus.QUEUED, "loading", "waiting", "generating", "done"


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


def shown_candidates(
    model: ModelRecord, adapters: list[AdapterRecord], request: CompareRequest
) -> tuple[tuple[Candidate, ...], int | None]:
    """The outputs in shown order; blind mode shuffles them (a fresh seed each time) and names them A, B, ..."""
    base = [Candidate(f"{model.name} (base)", f"{model.name} (base)", None)] if request.include_base else []
    shown = base + [Candidate(a.name, a.name, a.id) for a in adapters]
    if not request.blind:
        return tuple(shown), None
    # Not the generation seed: re-running one prompt and seed must not repeat the order, or it is not blind.
    order_seed = secrets.randbelow(2**31)
    random.Random(order_seed).shuffle(shown)
    return tuple(replace(c, label=BLIND_LABELS[i]) for i, c in enumerate(shown)), order_seed


def follow_answers(db: Database, comparison: Comparison, answer_timeout_s: float, poll_s: float) -> Iterator[CompareSnapshot]:
    """Snapshots as the answer streams in; the last one is ``done``. Raises ComparisonFailed."""
    tail = _Tail(Path(comparison.response_path))
    snapshot = CompareSnapshot(comparison, ("",) * len(comparison.candidates), QUEUED)
    deadline = time.monotonic() + answer_timeout_s
    next_look = 0.0
    while True:
        updated = _apply(snapshot, tail.read())
        now = time.monotonic()
        if not updated.done and now >= next_look:
            next_look = now + STATUS_EVERY_S
            with db.transaction() as tx:
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
                f"no answer within {answer_timeout_s:.0f} s; see the worker run {comparison.worker_run_id} in the Runs tab"
            )
        time.sleep(poll_s)


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
        summary = failure_summary(run.error_text) or "no error text"
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
