"""The supervisor: the only writer of run state.

It starts queued runs when the scheduler places them, tails each live run's events into SQLite,
notices exits (its own children by exit status; runs started by another process, or before an app
restart, by pid + start time), and decides the final status. Runs outlive the UI: nothing here
depends on a browser tab, and ``tick()`` after a restart re-attaches to live runs and finishes the
ones that ended while no supervisor was watching. Several processes (the app, the CLI) may each
run a supervisor: a file lock makes their ticks take turns, so a queued run starts once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from ftapp.adapters import AdapterService, AddAdapterRequest
from ftapp.errors import ConflictError, FtappError, NotFoundError
from ftapp.failure_causes import classify, read_tail
from ftapp.machine import detect_gpus
from ftapp.models import AddModelRequest, ModelService
from ftapp.process_identity import is_alive, process_start_time, signal_group
from ftapp.run_events import ingest, read_outcome
from ftapp.scheduler import Placement, plan_starts
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from ftapp.trainer_standby import TrainerStandby, standby_wanted
from storage import Database, RunRecord
from storage.types import utc_now
from trainer.protocol import LOG_FILE, SPEC_FILE, read_run_spec, read_spec, write_spec

log = logging.getLogger("ftapp.supervisor")
TERMINAL = ("succeeded", "failed", "cancelled")
FINETUNE, EVALUATION, INFERENCE = "finetune", "evaluation", "inference"
EXPORT, SERVE = "export", "serve"
# Inference workers and servers idle most of their life (a server lives until stopped); on CPU they
# do not count against the one CPU run at a time, or an endpoint left running would block all training.
CPU_EXEMPT_KINDS = (INFERENCE, SERVE)


class Supervisor:
    def __init__(self, settings: Settings, db: Database, adapters: AdapterService, models: ModelService,
                 poll_interval_s: float = 0.5, cancel_grace_s: float = 6.0, max_cpu_runs: int = 1):
        self.settings, self.db, self.adapters, self.models = settings, db, adapters, models
        self.poll_interval_s, self.cancel_grace_s, self.max_cpu_runs = poll_interval_s, cancel_grace_s, max_cpu_runs
        self._children: dict[str, subprocess.Popen] = {}
        self._kill_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_path = settings.home / "supervisor.lock"
        # Only the app's background supervisor keeps a warm trainer: a CLI's supervisor ends with its run.
        self.standby = TrainerStandby(settings.home)
        self._standby_gpus: list[int] | None = None  # None: no standby

    # -- the loop ------------------------------------------------------------------------------
    def start_background(self) -> None:
        if self._thread is None:
            gpus = [g.index for g in detect_gpus()]
            self._standby_gpus = gpus if standby_wanted(bool(gpus)) else None
            self._thread = threading.Thread(target=self._loop, name="ftapp-supervisor", daemon=True)
            self._thread.start()

    def stop_background(self) -> None:
        """Stop watching; the runs themselves keep going and are re-attached by the next supervisor."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.standby.stop()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick must not stop the supervision of every other run
                log.exception("supervisor tick failed")
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def tick(self) -> None:
        with self._lock, open(self._lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with self.db.transaction() as tx:
                live = tx.runs.find(status="running")
            for run in live:
                self._watch(run)
            self._start_queued()
            if self._standby_gpus is not None:
                self._keep_standby(self._standby_gpus)

    # -- live runs ---------------------------------------------------------------------------
    def _exit_status(self, run: RunRecord) -> tuple[bool, int | None]:
        """(exited, exit code when known)."""
        child = self._children.get(run.id)
        if child is not None:
            code = child.poll()
            return code is not None, code
        return not is_alive(run.pid, run.process_start_time), None

    def _watch(self, run: RunRecord) -> None:
        with self.db.transaction() as tx:
            ingest(tx, run)
        exited, code = self._exit_status(run)
        if not exited:
            deadline = self._kill_at.get(run.id)
            if deadline is not None and time.monotonic() >= deadline:
                signal_group(run.pid, signal.SIGKILL)
            return
        with self.db.transaction() as tx:
            fresh = tx.runs.get(run.id)
            ingest(tx, fresh)
        self._finish(fresh, code)

    def _finish(self, run: RunRecord, code: int | None) -> None:
        owned = self._children.pop(run.id, None) is not None
        self._kill_at.pop(run.id, None)
        if run.pid and (owned or run.cancel_requested_at is not None):
            # Leave no worker of the group behind (DDP children). Only for a group we know is ours:
            # an old pid seen after a restart may have been reused by an unrelated process.
            signal_group(run.pid, signal.SIGKILL)
        outcome = read_outcome(run.run_dir or "")
        tail = read_tail(run.log_path)
        values: dict = {"finished_at": utc_now(), "exit_code": code}
        if run.cancel_requested_at is not None and not (outcome.done and code in (0, None)):
            values.update(status="cancelled", error_cause="cancelled", error_text=None)
        elif outcome.done and code in (0, None) and run.kind != FINETUNE:
            values.update(status="succeeded", **self._register_merged(run, outcome.outputs))
        elif outcome.done and code in (0, None):
            output = next((p for p in reversed(outcome.outputs) if p.is_dir() and any(p.iterdir())), None)
            if output is None:
                values.update(status="failed", error_cause="artifact missing",
                              error_text="the trainer reported JOB_DONE but its output is not on disk")
            else:
                values.update(status="succeeded", **self._register_output(run, output))
        else:
            error_type, message = outcome.failure or ("", "")
            cause = classify(code, tail, error_type)
            summary = message or (f"exit code {code}" if code is not None else "the process ended without finishing")
            values.update(status="failed", error_cause=cause.cause,
                          error_text=f"{summary}\nSuggestion: {cause.suggestion}\n--- log tail ---\n{tail}")
        with self.db.transaction() as tx:
            tx.runs.update(run.id, **values)

    def _register_merged(self, run: RunRecord, outputs: list[Path]) -> dict:
        """A merge's model becomes a model of its own, to serve, evaluate or export; a clash is noted, not fatal."""
        if run.kind != EXPORT or not outputs:
            return {}
        spec = read_run_spec(Path(run.run_dir or "") / SPEC_FILE)
        try:
            self.models.add(AddModelRequest(type="project", name=getattr(spec, "name", ""), location=str(outputs[-1]),
                                            description=f"{run.name} (export run {run.id})"))
        except FtappError as error:
            return {"error_text": f"merged, but not registered as a model: {error}"}
        return {}

    def _register_output(self, run: RunRecord, output: Path) -> dict:
        """Register the adapter (or full model) with its lineage; a clash is noted, not fatal."""
        spec = read_spec(Path(run.run_dir) / SPEC_FILE)
        try:
            if spec.training_mode == "full":
                self.models.add(AddModelRequest(type="project", name=spec.adapter_name, location=str(output),
                                                description=f"full fine-tune by run {run.id}"))
            else:
                # A demo visitor's adapter is theirs, like the run that made it.
                adapters = AdapterService(self.settings, self.db.for_owner(run.owner)) if run.owner else self.adapters
                adapters.add(AddAdapterRequest(
                    name=spec.adapter_name, model_id=run.base_model_id or "", location=str(output),
                    run_id=run.id, prompt_id=run.prompt_id,
                    description=f"{spec.method} {spec.training_mode} run {run.id}{self._started_from(run)}",
                ))
        except FtappError as error:
            return {"error_text": f"trained, but not registered: {error}"}
        return {}

    def _started_from(self, run: RunRecord) -> str:
        # Adapters have no parent column: the run's adapter_id holds where a DPO/GRPO run started,
        # and the description says it for people.
        if not run.adapter_id:
            return ""
        with self.db.transaction() as tx:
            start = tx.adapters.get(run.adapter_id)
        return f", from adapter '{start.name}' ({start.id})" if start else f", from adapter {run.adapter_id}"

    # -- starting ---------------------------------------------------------------------------------
    def _start_queued(self) -> None:
        with self.db.transaction() as tx:
            queued = tx.runs.find(status="queued")
            running = tx.runs.find(status="running")
        if not queued:
            return
        busy = {int(g) for r in running for g in r.gpus.split(",") if g.isdigit()}
        cpu_runs = sum(1 for r in running if r.gpus == "cpu" and r.kind not in CPU_EXEMPT_KINDS)
        gpus = [g.index for g in detect_gpus()]
        exempt = [r for r in queued if r.kind in CPU_EXEMPT_KINDS and (r.devices_requested == "cpu" or not gpus)]
        placements = [Placement(r.id, "cpu", ()) for r in exempt]
        placements += plan_starts([(r.id, r.devices_requested) for r in queued if r not in exempt], busy, cpu_runs, gpus,
                                  self.max_cpu_runs)
        for placement in placements:
            run = next(r for r in queued if r.id == placement.run_id)
            try:
                self._launch(run, placement)
            except OSError as error:
                with self.db.transaction() as tx:
                    tx.runs.update(run.id, status="failed", finished_at=utc_now(), error_cause="launch failed",
                                   error_text=str(error))

    def _command(self, verb: str, spec_path: Path, processes: int) -> list[str]:
        if processes > 1:
            # Several GPUs: DDP through accelerate, one process per GPU, same entry point.
            # Precision is the trainer's business (bf16 through SFTConfig), so accelerate adds none.
            return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "trainer", verb, str(spec_path)]
        return [sys.executable, "-m", "trainer", verb, str(spec_path)]

    def _launch(self, run: RunRecord, placement: Placement) -> None:
        run_dir = Path(run.run_dir or "")
        spec_path = run_dir / SPEC_FILE
        spec = read_run_spec(spec_path)
        if spec.device != placement.device:
            write_spec(replace(spec, device=placement.device), spec_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=",".join(map(str, placement.gpu_ids)))
        token = HfToken(self.settings.secrets_dir).value()
        if token and not run.owner:  # a demo visitor's run never gets the host's token
            env["HF_TOKEN"] = token  # secrets travel only in the child's environment
        log_path = run_dir / LOG_FILE
        child = self.standby.take(spec.verb, spec_path, env, log_path, run_dir) if spec.num_processes == 1 else None
        if child is None:
            with open(log_path, "ab") as log_file:
                child = subprocess.Popen(
                    self._command(spec.verb, spec_path, spec.num_processes), stdout=log_file,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=run_dir,
                )
        self._children[run.id] = child
        with self.db.transaction() as tx:
            tx.runs.update(run.id, status="running", started_at=utc_now(), pid=child.pid,
                           process_start_time=process_start_time(child.pid), gpus=placement.label,
                           log_path=str(log_path))

    def _keep_standby(self, gpus: list[int]) -> None:
        """A warm trainer for the devices the next run most likely gets: a free GPU (the CPU without GPUs)."""
        if not gpus:
            self.standby.keep_ready("")
            return
        with self.db.transaction() as tx:
            busy = {g for run in tx.runs.find(status="running") for g in run.gpus.split(",")}
        free = [str(g) for g in gpus if str(g) not in busy]
        current = self.standby.devices
        if current is not None and (current not in busy or not free):
            return  # still a good guess, or no better one: restarting costs the imports again
        self.standby.keep_ready(free[0] if free else str(gpus[0]))

    # -- cancelling ---------------------------------------------------------------------------
    def cancel(self, run_id: str) -> RunRecord:
        with self._lock, self.db.transaction() as tx:
            run = tx.runs.get(run_id)
            if run is None:
                raise NotFoundError("run", run_id)
            if run.status in TERMINAL:
                raise ConflictError(f"run {run_id} already {run.status}")
            if run.status == "queued":
                return tx.runs.update(run_id, status="cancelled", cancel_requested_at=utc_now(),
                                      finished_at=utc_now(), error_cause="cancelled")
            run = tx.runs.update(run_id, cancel_requested_at=utc_now())
        # SIGTERM lets the trainer save a checkpoint; SIGKILL follows after the grace period.
        signal_group(run.pid, signal.SIGTERM)
        self._kill_at[run_id] = time.monotonic() + self.cancel_grace_s
        self.wake()
        return run
