"""The public demo's visitors: each one gets the services as they should see them.

A visitor's services read and write through ``Database.for_owner``: they see the shared demo
model, dataset and prompt (rows without an owner) plus what they made themselves, and everything
they make is stamped with their owner. On top, the subclasses below apply the demo's limits
(``ftapp.demo.policy``): uploads only, caps on rows, steps and concurrent runs, no Hub push, no
changes to shared things or to the host's settings. The local app never builds these: owner None
sees everything, exactly as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftapp.compare.service import ComparisonService
from ftapp.datasets.service import AddDatasetRequest, DatasetService
from ftapp.demo import policy
from ftapp.demo.path_policy import path_problem
from ftapp.errors import Problem, ValidationError
from ftapp.evaluation.request import EvaluationRequest
from ftapp.evaluation.service import EvaluationService
from ftapp.models.adapters import AdapterService, AddAdapterRequest
from ftapp.models.service import AddModelRequest, ModelService
from ftapp.prompts.configs import AddConfigRequest, AddConfigResult, ConfigService
from ftapp.prompts.service import PromptService
from ftapp.run_vocabulary import LIVE, RunKind
from ftapp.runs.fine_tune_request import FineTuneRequest, training_values
from ftapp.runs.machine import Machine
from ftapp.runs.preflight import Preflight
from ftapp.runs.service import RunService
from ftapp.runs.supervisor import Supervisor
from ftapp.secrets import HfToken
from ftapp.services import Services
from ftapp.settings import Settings
from ftapp.shipping.export_request import ExportRequest
from ftapp.shipping.exports import ExportService
from ftapp.shipping.serve_request import ServeRequest
from ftapp.shipping.serving import ServeService
from ftapp.transfer.service import DatabaseTransfer, ImportReport
from storage import Database, DatasetRecord, ModelRecord, RunRecord


class AddressBook:
    """Which visitors were seen at which network address (memory only, about the most recent ``keep`` visitors).

    The caps per address count the live runs of every visitor that shares an address with the one
    asking: three cookies from one client are one client. A visitor seen at several addresses counts
    at each of them (a laptop that moves keeps its runs counted where it was). Visitors with live
    runs (``busy``) are never forgotten, so a flood of fresh cookies cannot push them out of the book.
    """

    def __init__(self, keep: int = 50_000, addresses_per_visitor: int = 8, busy: Callable[[], set[str]] = set):
        self.keep, self.addresses_per_visitor, self.busy = keep, addresses_per_visitor, busy
        self._addresses: OrderedDict[str, list[str]] = OrderedDict()  # owner -> addresses, newest last
        self._owners: dict[str, set[str]] = {}  # address -> owners
        self._lock = threading.Lock()

    def note(self, owner: str, address: str) -> None:
        with self._lock:
            seen = self._addresses.pop(owner, [])
            if address in seen:
                seen.remove(address)
            seen.append(address)
            self._owners.setdefault(address, set()).add(owner)
            while len(seen) > self.addresses_per_visitor:
                self._forget(owner, seen.pop(0))
            self._addresses[owner] = seen
            if len(self._addresses) > self.keep:
                self._shrink()

    def _shrink(self) -> None:
        """Forget the least recently seen visitors down to 90 % of ``keep``, except the busy ones."""
        busy, target = self.busy(), self.keep * 9 // 10
        for owner in list(self._addresses):  # least recently seen first
            if len(self._addresses) <= target:
                break
            if owner not in busy:
                for address in self._addresses.pop(owner):
                    self._forget(owner, address)

    def _forget(self, owner: str, address: str) -> None:
        owners = self._owners.get(address, set())
        owners.discard(owner)
        if not owners:
            self._owners.pop(address, None)

    def neighbours(self, owner: str) -> set[str]:
        """``owner`` and every visitor seen at one of its addresses."""
        with self._lock:
            return {owner}.union(*(self._owners.get(a, set()) for a in self._addresses.get(owner, [])))


class _LiveRuns:
    """Counts of queued and running jobs: the visitor's own, its address's and everyone's (the caps on concurrent runs)."""

    def __init__(self, root: Database, owner: str, caps: policy.DemoCaps, book: AddressBook | None = None):
        self.root, self.owner, self.caps, self.book = root, owner, caps, book or AddressBook()

    def _live(self, kinds: tuple[str, ...]) -> list[RunRecord]:
        with self.root.transaction() as tx:
            return [r for status in LIVE for r in tx.runs.find(status=status) if r.kind in kinds]

    def problems(self) -> list[Problem]:
        live = self._live(policy.CAPPED_KINDS)
        own = [r.name or r.id[:8] for r in live if r.owner == self.owner]
        problems = policy.concurrency_problems(self.caps, own, len(live))
        if not any(p.rule_id == "DM-003" for p in problems):  # the visitor's own runs: said once
            problems += self.address_problems(live)
        return problems

    def address_problems(self, live: list[RunRecord], what: str = "job(s)") -> list[Problem]:
        neighbours = self.book.neighbours(self.owner)
        crowded = policy.address_problem(self.caps, [r.name or r.id[:8] for r in live if r.owner in neighbours], what)
        return [crowded] if crowded else []

    def worker_problems(self) -> list[Problem]:
        """The Compare tab's workers: capped over all visitors, and per address."""
        workers = self._live((policy.INFERENCE,))
        if len(workers) >= self.caps.max_runs_total:
            return policy.concurrency_problems(self.caps, [], len(workers))[-1:]
        return self.address_problems(workers, "Compare worker(s)")

    def adapter_name_taken(self, name: str) -> Problem | None:
        """Adapter names are unique over all visitors; a clash found only after training would waste the run."""
        with self.root.transaction() as tx:
            taken = tx.adapters.find_one(name=name) or any(
                r.name == name for status in LIVE for r in tx.runs.find(status=status, kind=RunKind.FINETUNE))
        if not taken:
            return None
        return Problem("FT-002", f"an adapter named '{name}' exists or is being trained (names are shared by every "
                                 "visitor of the demo); choose another", "adapter_name")


class VisitorDatasets(DatasetService):
    def __init__(self, settings: Settings, db: Database, caps: policy.DemoCaps):
        super().__init__(settings, db)
        self.caps = caps
        self.files_dir = policy.visitor_dir(settings, db.owner or "") / "datasets"

    def add(self, request: AddDatasetRequest) -> DatasetRecord:
        if request.type == "huggingface" or (request.huggingface_name and not request.location):
            raise ValidationError(policy.upload_only("a Hugging Face Hub dataset", "huggingface_name"))
        if request.location:
            outside = path_problem(self.settings, request.location, "DS-003", "location", uploads_only=True)
            if outside:
                raise ValidationError(outside)
        return super().add(request)

    def _insert(self, dataset_id: str, **values: Any) -> DatasetRecord:
        # Called once the file is parsed and copied, inside the clean-up of a failed import.
        too_many = policy.rows_problem(self.caps, values.get("num_rows"), "location", "dataset")
        if too_many:
            raise ValidationError(too_many)
        return super()._insert(dataset_id, **values)

    def remove(self, dataset_id: str, remove_prompts: bool = False) -> list[str]:
        record = self.get(dataset_id)
        if record.owner is None:
            raise ValidationError(policy.shared_read_only("dataset", record.name))
        return super().remove(dataset_id, remove_prompts)


class VisitorModels(ModelService):
    def add(self, request: AddModelRequest) -> ModelRecord:
        raise ValidationError(policy.upload_only("registering a model", "location"))

    def accept_license(self, model_id: str) -> ModelRecord:
        raise ValidationError(policy.shared_read_only("model", self.get(model_id).name))

    def remove(self, model_id: str) -> None:
        raise ValidationError(policy.shared_read_only("model", self.get(model_id).name))


class VisitorAdapters(AdapterService):
    def add(self, request: AddAdapterRequest):
        raise ValidationError(policy.upload_only("registering an adapter from a path or the Hub", "location"))

    def remove(self, adapter_id: str) -> None:
        record = self.get(adapter_id)
        if record.owner is None:
            raise ValidationError(policy.shared_read_only("adapter", record.name))
        super().remove(adapter_id)


class VisitorPrompts(PromptService):
    def remove(self, prompt_id: str) -> None:
        record = self.get(prompt_id)
        if record.owner is None:
            raise ValidationError(policy.shared_read_only("prompt", record.name))
        super().remove(prompt_id)


class VisitorConfigs(ConfigService):
    def add(self, request: AddConfigRequest) -> AddConfigResult:
        raise ValidationError(policy.host_only("saving configs (the Train tab's fields and presets are yours to use)"))

    def remove(self, config_id: str) -> None:
        raise ValidationError(policy.host_only("removing configs"))


class VisitorRuns(RunService):
    def __init__(self, settings: Settings, db: Database, datasets: DatasetService, supervisor: Supervisor,
                 caps: policy.DemoCaps, live: _LiveRuns):
        super().__init__(settings, db, datasets, supervisor)
        self.caps, self.live = caps, live

    def check(self, request: FineTuneRequest, machine: Machine | None = None) -> tuple[list[Problem], Preflight | None]:
        problems, preflight = super().check(request, machine)
        demo = self._demo_problems(request)
        if any(p.rule_id == "FT-002" for p in problems):  # the visitor's own adapter has the name: said once
            demo = [p for p in demo if p.rule_id != "FT-002"]
        return problems + demo, preflight

    def _demo_problems(self, request: FineTuneRequest) -> list[Problem]:
        problems: list[Problem] = []
        if request.output_dir is not None:
            problems.append(policy.upload_only("an output_dir on the server", "output_dir"))
        if request.training_mode == "full":
            problems.append(Problem("DM-005", "the demo trains LoRA adapters (a full fine-tune would register a model "
                                              "every visitor sees)", "training_mode"))
        with self.db.transaction() as tx:
            model = tx.models.get(request.base_model_id or "")
            dataset = tx.datasets.get(request.dataset_id or "")
            values = training_values(tx, request)
        if model is not None:
            problems += policy.device_problems(self.caps, request.gpus, request.num_processes, model.num_parameters, model.name)
        if dataset is not None:
            rows = None if dataset.num_rows is None else int(dataset.num_rows * request.dataset_fraction)
            too_many = policy.rows_problem(self.caps, rows, "dataset_id", "training run")
            if too_many:
                problems.append(too_many)
            else:
                train_rows = int((rows or 0) * request.train_test_split)
                steps = policy.steps_problem(self.caps, policy.training_steps(values, train_rows, request.num_epochs))
                problems += [steps] if steps else []
        taken = self.live.adapter_name_taken(request.adapter_name) if request.adapter_name else None
        return problems + ([taken] if taken else []) + self.live.problems()

    def resume(self, run_id: str) -> RunRecord:
        busy = self.live.problems()
        if busy:
            raise ValidationError(busy)
        return super().resume(run_id)

    def cancel(self, run_id: str) -> RunRecord:
        run = self.get(run_id)
        if run.owner is None:
            raise ValidationError(policy.shared_read_only("run", run.name or run.id))
        return super().cancel(run_id)


class VisitorEvaluations(EvaluationService):
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor, caps: policy.DemoCaps, live: _LiveRuns):
        super().__init__(settings, db, supervisor)
        self.caps, self.live = caps, live

    def _capped(self, request: EvaluationRequest) -> EvaluationRequest:
        return request if request.max_rows is not None else replace(request, max_rows=self.caps.max_eval_rows)

    def check(self, request: EvaluationRequest, machine: Machine | None = None):
        request = self._capped(request)
        problems, rows = super().check(request, machine)
        demo = [p for p in (policy.eval_rows_problem(self.caps, request.max_rows or 0), policy.gpus_problem(request.gpus)) if p]
        return problems + demo + self.live.problems(), rows

    def submit(self, request: EvaluationRequest, machine: Machine | None = None) -> RunRecord:
        return super().submit(self._capped(request), machine)


class VisitorComparisons(ComparisonService):
    def __init__(self, settings: Settings, db: Database, datasets: DatasetService, supervisor: Supervisor,
                 live: _LiveRuns):
        super().__init__(settings, db, datasets, supervisor)
        self.live = live

    def _start_worker(self, model: ModelRecord) -> RunRecord:
        # Each visitor's Compare tab has its own worker (a process holding the model); bound how many live at once.
        busy = self.live.worker_problems()
        if busy:
            raise ValidationError(busy)
        return super()._start_worker(model)


class VisitorExports(ExportService):
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor, live: _LiveRuns):
        super().__init__(settings, db, supervisor)
        self.live = live

    def check(self, request: ExportRequest, machine: Machine | None = None) -> list[Problem]:
        problems = super().check(request, machine)
        if request.action == "push":
            problems.append(policy.host_only("pushing to the Hugging Face Hub with the host's token", "action"))
        elif request.action not in policy.DEMO_EXPORT_ACTIONS:
            problems.append(policy.host_only(f"export action {request.action!r} (download an archive instead)", "action"))
        return problems + self.live.problems()


class VisitorServing(ServeService):
    def check(self, request: ServeRequest, machine: Machine | None = None) -> list[Problem]:
        return [policy.host_only("serving an endpoint", "model_id")]

    def submit(self, request: ServeRequest, machine: Machine | None = None) -> RunRecord:
        raise ValidationError(self.check(request, machine))


class VisitorDatabase(DatabaseTransfer):
    def export_json(self) -> str:
        raise ValidationError(policy.host_only("exporting the database"))

    def import_from(self, path: Path) -> ImportReport:
        raise ValidationError(policy.host_only("importing a database"))


class VisitorToken(HfToken):
    def store(self, token: str) -> None:
        raise ValidationError(policy.host_only("setting the Hugging Face token"))

    def clear(self) -> None:
        raise ValidationError(policy.host_only("clearing the Hugging Face token"))


def visitor_services(services: Services, owner: str, caps: policy.DemoCaps, book: AddressBook | None = None) -> Services:
    """``services`` as the visitor ``owner`` sees them; the supervisor and the demo installer stay shared."""
    settings, root = services.settings, services.db
    db = root.for_owner(owner)
    live = _LiveRuns(root, owner, caps, book)
    datasets = VisitorDatasets(settings, db, caps)
    return Services(
        settings=settings, db=db, datasets=datasets, models=VisitorModels(settings, db),
        adapters=VisitorAdapters(settings, db), prompts=VisitorPrompts(db, datasets), configs=VisitorConfigs(db),
        database=VisitorDatabase(db), demo=services.demo, hf_token=VisitorToken(settings.secrets_dir),
        supervisor=services.supervisor, runs=VisitorRuns(settings, db, datasets, services.supervisor, caps, live),
        comparisons=VisitorComparisons(settings, db, datasets, services.supervisor, live),
        evaluations=VisitorEvaluations(settings, db, services.supervisor, caps, live),
        exports=VisitorExports(settings, db, services.supervisor, live),
        serving=VisitorServing(settings, db, services.supervisor),
    )


class Visitors:
    """Each visitor's services, built on first use and kept for the next call (the Compare tab's
    service remembers which comparisons got their vote); the least recently seen are let go."""

    def __init__(self, services: Services, caps: policy.DemoCaps | None = None, keep: int = 512):
        self.services, self.caps, self.keep = services, caps or policy.DemoCaps.from_env(), keep
        self.addresses = AddressBook(busy=self._busy_owners)
        self._views: OrderedDict[str, Services] = OrderedDict()
        self._lock = threading.Lock()

    def _busy_owners(self) -> set[str]:
        with self.services.db.transaction() as tx:
            return {r.owner for status in LIVE for r in tx.runs.find(status=status) if r.owner}

    def for_key(self, visitor_key: str, address: str | None = None) -> Services:
        """The services of the visitor whose browser holds ``visitor_key``, asking from ``address``."""
        owner = policy.owner_of(visitor_key)
        if address:
            self.addresses.note(owner, address)
        with self._lock:
            view = self._views.pop(owner, None) or visitor_services(self.services, owner, self.caps, self.addresses)
            self._views[owner] = view
            while len(self._views) > self.keep:
                self._views.popitem(last=False)
            return view
