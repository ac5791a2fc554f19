"""The demo's caps on concurrent runs (DM-003, DM-004, DM-009) and its shared adapter names (FT-002).

These count every visitor's rows, so they read the whole database (the services' ``everyone``), never
one visitor's view of it.
"""

from __future__ import annotations

from ftapp import rules
from ftapp.demo.policy import CAPPED_KINDS, INFERENCE, address_problem, concurrency_problems
from ftapp.demo.visitor import Visitor
from ftapp.errors import Problem
from ftapp.run_vocabulary import LIVE, RunKind
from storage import Database, RunRecord


def _live(everyone: Database, kinds: tuple[str, ...]) -> list[RunRecord]:
    with everyone.transaction() as tx:
        return [r for status in LIVE for r in tx.runs.find(status=status) if r.kind in kinds]


def _names(runs: list[RunRecord]) -> list[str]:
    return [r.name or r.id[:8] for r in runs]


def _address_problems(visitor: Visitor, live: list[RunRecord], what: str = "job(s)") -> list[Problem]:
    neighbours = visitor.book.neighbours(visitor.owner)
    crowded = address_problem(visitor.caps, _names([r for r in live if r.owner in neighbours]), what)
    return [crowded] if crowded else []


def run_problems(everyone: Database, visitor: Visitor) -> list[Problem]:
    """Queued and running training, evaluation and export jobs: the visitor's own, its address's and everyone's."""
    live = _live(everyone, CAPPED_KINDS)
    problems = concurrency_problems(visitor.caps, _names([r for r in live if r.owner == visitor.owner]), len(live))
    if not any(p.rule == rules.DEMO_RUNS_PER_VISITOR for p in problems):  # the visitor's own runs: said once
        problems += _address_problems(visitor, live)
    return problems


def worker_problems(everyone: Database, visitor: Visitor) -> list[Problem]:
    """The Compare tab's workers: capped over all visitors, and per address."""
    workers = _live(everyone, (INFERENCE,))
    if len(workers) >= visitor.caps.max_runs_total:
        return concurrency_problems(visitor.caps, [], len(workers))[-1:]
    return _address_problems(visitor, workers, "Compare worker(s)")


def adapter_name_problem(everyone: Database, name: str) -> Problem | None:
    """Adapter names are unique over all visitors; a clash found only after training would waste the run."""
    with everyone.transaction() as tx:
        taken = tx.adapters.find_one(name=name) or any(
            r.name == name for status in LIVE for r in tx.runs.find(status=status, kind=RunKind.FINETUNE)
        )
    if not taken:
        return None
    return Problem(
        rules.ADAPTER_NAME,
        f"an adapter named '{name}' exists or is being trained (names are shared by every visitor of the demo); choose another",
        "adapter_name",
    )


def busy_owners(everyone: Database) -> set[str]:
    """The visitors with a queued or running run of any kind: the address book keeps them."""
    with everyone.transaction() as tx:
        return {r.owner for status in LIVE for r in tx.runs.find(status=status) if r.owner}
