"""The Compare playground's inference workers: one persistent worker per base model, found, started, handed requests, stopped.

A worker is a run of kind ``inference`` that the supervisor starts on a device the scheduler chose and that exits
after ``idle_timeout_s`` without a request (``trainer.inference.worker``). A request is a file in its queue folder;
the file protocol is documented on ``trainer.protocol.InferenceSpec``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftapp.compare.answers import ComparisonFailed
from ftapp.demo.live_runs import worker_problems
from ftapp.demo.visitor import Visitor
from ftapp.errors import ValidationError
from ftapp.ids import new_id
from ftapp.run_vocabulary import TERMINAL, RunKind
from ftapp.runs.enqueue import enqueue
from ftapp.runs.outcome import started_payload
from ftapp.runs.specs import run_spec
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import Database, ModelRecord, RunRecord
from trainer.protocol import REQUESTS_DIR, InferenceSpec, ModelSource, write_json_atomically

DEFAULT_IDLE_TIMEOUT_S = 600.0
# One per process: two pages asking at once (each demo visitor's services are built afresh for every request)
# must not start two workers for one model.
_WORKER_START = threading.Lock()


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


class InferenceWorkers:
    """The live workers ``db`` sees; ``everyone`` (the whole database) is what the demo's cap on workers counts."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        supervisor: Supervisor,
        idle_timeout_s: float,
        devices: str,
        cpu_threads: int | None,
        *,
        visitor: Visitor | None,
        everyone: Database,
    ):
        self.settings, self.db, self.supervisor = settings, db, supervisor
        self.idle_timeout_s, self.devices, self.cpu_threads = idle_timeout_s, devices, cpu_threads
        self.visitor, self.everyone = visitor, everyone

    def queue_request(self, model: ModelRecord, request_id: str, payload: dict[str, Any]) -> RunRecord:
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

    def list_live(self) -> list[Worker]:
        return [_worker_view(run) for run in self._live_runs()]

    def find_live(self, model_id: str) -> Worker | None:
        """The model's live worker (the newest, should there be two)."""
        found = [_worker_view(run) for run in self._live_runs(model_id)]
        return found[-1] if found else None

    def stop(self, model_id: str) -> list[RunRecord]:
        """Cancel the model's workers (SIGTERM; the runs end cancelled); empty when none was running."""
        return [self.supervisor.cancel(run.id) for run in self._live_runs(model_id)]

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
