"""The supervisor: the only writer of run state.

It starts queued runs when the scheduler places them, tails each live run's events into SQLite,
notices exits (its own children by exit status; runs started by another process, or before an app
restart, by pid + start time), and decides the final status. Runs outlive the UI: nothing here
depends on a browser tab, and ``tick()`` after a restart re-attaches to live runs and finishes the
ones that ended while no supervisor was watching. Several processes (the app, the CLI) may each
run a supervisor: a file lock makes their ticks take turns, so a queued run starts once.

What one run does cannot stop the others: a run whose events cannot be stored, whose launch is
refused or whose finish raises is marked failed with the reason, and the tick goes on. A cancel's
SIGKILL deadline is a column of the run, so whichever process watches the run escalates it. Only a
spec that ftapp wrote into the run's own folder, ``<home>/runs/<run id>``, is ever launched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from ftapp import rules
from ftapp.errors import ConflictError, NotFoundError, ValidationError
from ftapp.home_paths import run_folder
from ftapp.models.adapters import AdapterService
from ftapp.models.service import ModelService
from ftapp.run_vocabulary import LONG_LIVED, TERMINAL, RunKind, RunStatus
from ftapp.runs.failure_causes import SUPERVISION_CAUSES, classify, read_tail, vanished
from ftapp.runs.ingest import backfill_outcome, ingest
from ftapp.runs.launching import LaunchRefused, launch_command, launch_spec
from ftapp.runs.log_text import failure_text
from ftapp.runs.machine import detect_gpus
from ftapp.runs.outcome import output_on_disk, read_outcome
from ftapp.runs.output_registration import register_merged, register_output
from ftapp.runs.process_identity import is_alive, process_start_time, signal_group
from ftapp.runs.scheduler import Placement, plan_starts, readable_request
from ftapp.runs.standby import TrainerStandby, standby_wanted
from ftapp.secrets import ApiKeys, HfToken
from ftapp.settings import Settings
from storage import Database, RunRecord
from storage.types import utc_now
from trainer.protocol import DDP, JUDGE_KEY_ENV, LOG_FILE, EvaluationSpec

log = logging.getLogger("ftapp.runs.supervisor")
_ERROR_TRACE = re.compile(r"Traceback \(most recent call last\)|Fatal Python error|Segmentation fault|cannot read the spec")


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        adapters: AdapterService,
        models: ModelService,
        poll_interval_s: float = 0.5,
        cancel_grace_s: float = 6.0,
        max_cpu_runs: int = 1,
    ):
        self.settings, self.db, self.adapters, self.models = settings, db, adapters, models
        self.poll_interval_s, self.cancel_grace_s, self.max_cpu_runs = poll_interval_s, cancel_grace_s, max_cpu_runs
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._turn_depth = 0  # > 0 while this process holds the file lock (always under self._lock)
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

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn among the threads of this process and the supervisors of every other process."""
        with self._lock:
            if self._turn_depth:  # already ours (a cancel from within a tick): a second flock would wait on itself
                yield
                return
            with open(self._lock_path, "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                self._turn_depth += 1
                try:
                    yield
                finally:
                    self._turn_depth -= 1

    def tick(self) -> None:
        with self._turn():
            with self.db.transaction() as tx:
                live = tx.runs.find(status=RunStatus.RUNNING)
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
        """One live run's turn in a tick; whatever goes wrong with it fails this run only."""
        cause = "bad events"
        try:
            current = self._ingest(run.id)
            cause = "supervision failed"
            exited, code = self._exit_status(run)
            if not exited:
                if current.kill_after is not None and run.pid is not None and utc_now() >= current.kill_after:
                    # Cancelled, and still alive after the grace period: whoever asked, SIGKILL now. The process
                    # is the one we started (our child, or pid + start time just checked by _exit_status).
                    signal_group(run.pid, signal.SIGKILL)
                return
            cause = "bad events"
            fresh = self._ingest(run.id)
            cause = "finish failed"
            self._finish(fresh, code)
        except Exception as error:  # any error of one run is that run's failure, not the tick's
            self._give_up(run, cause, error)

    def _ingest(self, run_id: str) -> RunRecord:
        with self.db.transaction() as tx:
            run = tx.runs.get(run_id)
            if run is None:
                raise LookupError(f"run {run_id} vanished from the database")
            ingest(tx, run)
            return tx.runs.get(run_id) or run

    def backfill_outcomes(self) -> int:
        """Runs whose events were ingested before rows kept how a run started and ended (revision 0006, or rows of an
        older export's import): read each one's events file once, from the run's own folder, so their results still
        show. In this supervisor's turn, as every write of run state is. Returns how many rows were filled."""
        with self.db.transaction() as tx:
            pending = [r.id for r in tx.runs.list() if r.events_offset > 0 and r.last_event_at is None]
        filled = 0
        with self._turn():
            for run_id in pending:
                try:
                    with self.db.transaction() as tx:
                        run = tx.runs.get(run_id)
                        filled += bool(run and backfill_outcome(tx, run, run_folder(self.settings, run)))
                except (ValidationError, OSError) as error:  # a folder outside the home, an unreadable file: no results
                    log.warning("run %s: its events could not be read back (%s)", run_id, error)
        return filled

    def _give_up(self, run: RunRecord, cause: str, error: Exception) -> None:
        """Fail this run with the reason and stop its process: nobody watches it any more, so it must not hold its
        devices. The other runs of the tick keep going."""
        log.error("run %s: %s", run.id, cause, exc_info=error)
        child = self._children.pop(run.id, None)
        try:
            if child is not None:
                if child.poll() is None:
                    signal_group(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
            elif run.pid and is_alive(run.pid, run.process_start_time):
                signal_group(run.pid, signal.SIGKILL)
        except (OSError, subprocess.TimeoutExpired):
            log.warning("run %s: its process did not go away", run.id)
        detail = f"{type(error).__name__}: {str(error)[:2000]}"
        try:
            with self.db.transaction() as tx:
                current = tx.runs.get(run.id)
                if current is not None and current.status not in TERMINAL:
                    tx.runs.update(
                        run.id,
                        status=RunStatus.FAILED,
                        finished_at=utc_now(),
                        error_cause=cause,
                        exit_code=child.returncode if child is not None else None,
                        error_text=f"{detail}\nSuggestion: {SUPERVISION_CAUSES[cause]}",
                    )
        except Exception:  # the database itself failing is for the next tick to meet
            log.exception("run %s: could not be marked failed", run.id)

    def _finish(self, run: RunRecord, code: int | None) -> None:
        owned = self._children.pop(run.id, None) is not None
        if run.pid and (owned or run.cancel_requested_at is not None):
            # Leave no worker of the group behind (DDP children). Only for a group we know is ours:
            # an old pid seen after a restart may have been reused by an unrelated process.
            signal_group(run.pid, signal.SIGKILL)
        with self.db.transaction() as tx:
            outcome = read_outcome(run, tx.artifacts.find(run_id=run.id))  # the events, as ingested just before
        tail = read_tail(run.log_path)
        values: dict = {"finished_at": utc_now(), "exit_code": code}
        # A server answers a stop by shutting down cleanly, with ``done`` and exit 0: it was stopped all the same.
        # A training run that finished before the signal reached it did succeed.
        stopped = run.kind in LONG_LIVED or not (outcome.done and code in (0, None))
        if run.cancel_requested_at is not None and stopped:
            escalated = code == -signal.SIGKILL or code is None and run.kill_after is not None and utc_now() >= run.kill_after
            values.update(
                status=RunStatus.CANCELLED,
                error_cause="cancelled",
                error_text=("it did not stop within the grace period after SIGTERM, so it was killed (SIGKILL)" if escalated else None),
            )
        elif outcome.done and code in (0, None) and run.kind != RunKind.FINETUNE:
            values.update(status=RunStatus.SUCCEEDED, **register_merged(self.settings, self.models, run, outcome.outputs))
        elif outcome.done and code in (0, None):
            output = output_on_disk(outcome)
            if output is None:
                values.update(
                    status=RunStatus.FAILED,
                    error_cause="artifact missing",
                    error_text="the trainer reported JOB_DONE but its output is not on disk",
                )
            else:
                values.update(
                    status=RunStatus.SUCCEEDED, **register_output(self.settings, self.db, self.models, self.adapters, run, output)
                )
        else:
            error_type, message = outcome.failure or ("", "")
            cause = classify(code, tail, error_type)
            if code is None and outcome.failure is None and not _ERROR_TRACE.search(tail):
                # Not our child (another process started it), so no exit status to read; it neither finished nor
                # reported an error, and left no traceback: that is how a process killed by a signal ends.
                cause = vanished()
            summary = message or (
                f"exit code {code}"
                if code is not None
                else (
                    "the process ended without reporting done or failed; its exit code is unknown: another process "
                    "started it, and only a process's parent can read its exit status"
                )
            )
            values.update(
                status=RunStatus.FAILED,
                error_cause=cause.cause,
                error_text=failure_text(summary, cause.suggestion, tail),
            )
        with self.db.transaction() as tx:
            tx.runs.update(run.id, **values)

    # -- starting ---------------------------------------------------------------------------------
    def _start_queued(self) -> None:
        with self.db.transaction() as tx:
            queued = tx.runs.find(status=RunStatus.QUEUED)
            running = tx.runs.find(status=RunStatus.RUNNING)
        for run in [r for r in queued if not readable_request(r.devices_requested)]:
            self._give_up(
                run,
                "launch refused",
                LaunchRefused(f"devices {run.devices_requested[:100]!r} name no devices: 'cpu', 'auto' or GPU ids like 0,1"),
            )
        queued = [r for r in queued if readable_request(r.devices_requested)]
        if not queued:
            return
        busy = {int(g) for r in running for g in r.gpus.split(",") if g.isdigit()}
        # Idle workers do not take the one CPU slot: an endpoint left running must not block all training.
        cpu_runs = sum(1 for r in running if r.gpus == "cpu" and r.kind not in LONG_LIVED)
        gpus = [g.index for g in detect_gpus()]
        exempt = [r for r in queued if r.kind in LONG_LIVED and (r.devices_requested == "cpu" or not gpus)]
        placements = [Placement(r.id, "cpu", ()) for r in exempt]
        placements += plan_starts([(r.id, r.devices_requested) for r in queued if r not in exempt], busy, cpu_runs, gpus, self.max_cpu_runs)
        for placement in placements:
            run = next(r for r in queued if r.id == placement.run_id)
            try:
                self._launch(run, placement)
            except LaunchRefused as error:
                self._give_up(run, "launch refused", error)
            except Exception as error:  # this run fails; the next ones still start
                self._give_up(run, "launch failed", error)

    def _launch(self, run: RunRecord, placement: Placement) -> None:
        spec_path, spec = launch_spec(self.settings, run)
        run_dir = Path(spec.run_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=",".join(map(str, placement.gpu_ids)))
        token = HfToken(self.settings.secrets_dir).value()
        if token and not run.owner:  # a demo visitor's run never gets the host's token
            env["HF_TOKEN"] = token  # secrets travel only in the child's environment
        judge = spec.judge if isinstance(spec, EvaluationSpec) else None
        key = ApiKeys(self.settings.secrets_dir).value(judge.api_key_name) if judge and judge.api_key_name and not run.owner else None
        if key:
            env[JUDGE_KEY_ENV] = key  # an LLM judge's endpoint key, like the token: only in the child's environment
        log_path = run_dir / LOG_FILE
        # The warm trainer is one plain process: a run under accelerate launch (several, or FSDP2) starts fresh.
        alone = spec.num_processes == 1 and spec.strategy == DDP
        child = self.standby.take(spec.verb, spec_path, env, log_path, run_dir) if alone else None
        if child is None:
            with open(log_path, "ab") as log_file:
                child = subprocess.Popen(
                    launch_command(spec.verb, spec_path, spec.num_processes, spec.strategy),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                    cwd=run_dir,
                )
        self._children[run.id] = child
        with self.db.transaction() as tx:
            tx.runs.update(
                run.id,
                status=RunStatus.RUNNING,
                started_at=utc_now(),
                pid=child.pid,
                process_start_time=process_start_time(child.pid),
                gpus=placement.label,
                log_path=str(log_path),
            )

    def _keep_standby(self, gpus: list[int]) -> None:
        """A warm trainer for the devices the next run most likely gets: a free GPU (the CPU without GPUs)."""
        if not gpus:
            self.standby.keep_ready("")
            return
        with self.db.transaction() as tx:
            busy = {g for run in tx.runs.find(status=RunStatus.RUNNING) for g in run.gpus.split(",")}
        free = [str(g) for g in gpus if str(g) not in busy]
        current = self.standby.devices
        if current is not None and (current not in busy or not free):
            return  # still a good guess, or no better one: restarting costs the imports again
        self.standby.keep_ready(free[0] if free else str(gpus[0]))

    # -- cancelling ---------------------------------------------------------------------------
    def cancel(self, run_id: str) -> RunRecord:
        """SIGTERM now (the trainer saves a checkpoint), SIGKILL from ``kill_after`` on, by whichever supervisor
        watches the run then: the deadline is in the database, not in this process."""
        with self._turn(), self.db.transaction() as tx:
            run = tx.runs.get(run_id)
            if run is None:
                raise NotFoundError("run", run_id, rules.RUN_EXISTS)
            if run.status in TERMINAL:
                raise ConflictError(f"run {run_id} already {run.status}")
            now = utc_now()
            if run.status == RunStatus.QUEUED:
                return tx.runs.update(run_id, status=RunStatus.CANCELLED, cancel_requested_at=now, finished_at=now, error_cause="cancelled")
            run = tx.runs.update(
                run_id,
                cancel_requested_at=run.cancel_requested_at or now,
                kill_after=run.kill_after or now + timedelta(seconds=self.cancel_grace_s),
            )
            child = self._children.get(run_id)
            if run.pid and (child is not None and child.poll() is None or is_alive(run.pid, run.process_start_time)):
                signal_group(run.pid, signal.SIGTERM)  # only the process we started: a pid may have been reused
        self.wake()
        return run
