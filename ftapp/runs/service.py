"""Run use cases: check (validation + preflight), submit, list, inspect, cancel, resume, wait."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ftapp.datasets.service import DatasetService
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError
from ftapp.home_paths import run_folder, run_log
from ftapp.ids import new_id
from ftapp.models.config_json import read_local_model_config
from ftapp.run_vocabulary import RESUMABLE, RunStatus
from ftapp.runs.devices import choose_devices
from ftapp.runs.failure_causes import read_tail
from ftapp.runs.fine_tune_request import FineTuneRequest, training_values, validate_fine_tune
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.method_request import reward_problems
from ftapp.runs.preflight import Preflight, estimate, kv_size
from ftapp.runs.specs import build_train_spec
from ftapp.runs.supervisor import FINETUNE, RUN_RULE, TERMINAL, Supervisor, launch_folder, write_launch_spec
from ftapp.settings import Settings
from storage import Database, RunRecord
from trainer.protocol import AUTO_DEVICE, LOG_FILE, TrainSpec

PREFLIGHT_SAMPLE_ROWS = 50


class RunService:
    def __init__(self, settings: Settings, db: Database, datasets: DatasetService, supervisor: Supervisor):
        self.settings, self.db, self.datasets, self.supervisor = settings, db, datasets, supervisor

    def check(self, request: FineTuneRequest, machine: Machine | None = None) -> tuple[list[Problem], Preflight | None]:
        """Every problem of the request, and the preflight estimate when the request is otherwise valid."""
        machine = machine or detect_machine()
        with self.db.transaction() as tx:
            problems = validate_fine_tune(tx, request, machine, self.settings)
            if problems:
                return problems, None
            model = tx.models.get(request.base_model_id)
            dataset = tx.datasets.get(request.dataset_id)
            prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None
            training = training_values(tx, request)
        devices, _ = choose_devices(request.gpus, machine, "FT-005")
        config = read_local_model_config(model.location) if model.location else None
        rows = self.datasets.read_rows(dataset, 0, PREFLIGHT_SAMPLE_ROWS) if dataset.type != "huggingface" else []
        train_rows = int((dataset.num_rows or len(rows)) * request.dataset_fraction * request.train_test_split)
        preflight = estimate(
            num_parameters=model.num_parameters or 0, hidden_size=int((config or {}).get("hidden_size") or 0),
            num_layers=int((config or {}).get("num_hidden_layers") or 0), training_mode=request.training_mode,
            training=training, train_rows=train_rows, sample_rows=rows,
            template=prompt.prompt_template if prompt else None, devices=devices, machine=machine,
            method=request.method, method_settings=request.method_settings,
            input_template=prompt.input_template if prompt else None, kv_units=kv_size(config or {}),
        )
        if model.num_parameters and not preflight.fits:
            problems.append(Problem("FT-006", f"does not fit: {preflight.summary()}; use QLoRA, a smaller micro-batch or max_length, or another device", "memory"))
        return problems, preflight

    def submit(self, request: FineTuneRequest, machine: Machine | None = None) -> tuple[RunRecord, Preflight]:
        """Queue a run; returns it with the preflight estimate the user should see."""
        problems, preflight = self.check(request, machine)
        if problems:
            raise ValidationError(problems)
        run_id = new_id()
        with self.db.transaction() as tx:
            spec = build_train_spec(tx, self.settings, request, run_id, device=AUTO_DEVICE)
        run_dir = Path(spec.run_dir)
        run_dir.mkdir(parents=True)
        try:
            write_launch_spec(self.settings, spec)  # into <home>/runs/<id>, the only spec the supervisor launches
            with self.db.transaction() as tx:
                run = tx.runs.add(
                    id=run_id, kind=FINETUNE, name=request.adapter_name, status=RunStatus.QUEUED, spec=json.dumps(spec.to_dict()),
                    run_dir=str(run_dir), log_path=str(run_dir / LOG_FILE), base_model_id=request.base_model_id,
                    dataset_id=request.dataset_id, prompt_id=request.prompt_id, devices_requested=request.gpus,
                    adapter_id=request.init_adapter_id,  # the adapter it starts from (DPO/GRPO), for lineage
                )
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(launch_folder(self.settings, run_id), ignore_errors=True)
            raise
        self.supervisor.wake()
        return run, preflight

    def resume(self, run_id: str) -> RunRecord:
        """A new run that continues the given one from its last checkpoint (optimizer state included)."""
        old = self.get(run_id)
        if old.kind != FINETUNE:
            raise ConflictError(f"run {run_id} is an {old.kind} run; only training runs resume from a checkpoint")
        if old.status not in RESUMABLE:
            raise ConflictError(f"run {run_id} is {old.status}; only a failed or cancelled run can be resumed")
        folder = run_folder(self.settings, old)  # the run's own folder, never one its row (or an import) points at
        checkpoints = sorted(folder.glob("checkpoints/checkpoint-*"),
                             key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1)
        if not checkpoints:
            raise ConflictError(f"run {run_id} wrote no checkpoint to resume from")
        spec = self._resumable_spec(old)
        new_run_id = new_id()
        run_dir = folder.parent / new_run_id
        spec = replace(spec, run_id=new_run_id, run_dir=str(run_dir), resume_from=str(checkpoints[-1]))
        run_dir.mkdir(parents=True)
        write_launch_spec(self.settings, spec)
        with self.db.transaction() as tx:
            run = tx.runs.add(
                id=new_run_id, kind=old.kind, name=old.name, status=RunStatus.QUEUED, spec=json.dumps(spec.to_dict()),
                run_dir=str(run_dir), log_path=str(run_dir / LOG_FILE), base_model_id=old.base_model_id,
                dataset_id=old.dataset_id, prompt_id=old.prompt_id, parent_run_id=old.id, adapter_id=old.adapter_id,
                devices_requested=old.devices_requested,
            )
        self.supervisor.wake()
        return run

    def _resumable_spec(self, run: RunRecord) -> TrainSpec:
        """The spec ftapp stored in the run's row at submit (not a spec.json its folder may hold), checked again as a
        new request would be: the row may have come from an import, and resuming launches what it says."""
        try:
            spec = TrainSpec.from_dict(json.loads(run.spec))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            raise ConflictError(f"run {run.id} has no readable spec to resume from ({type(error).__name__})") from error
        problems = reward_problems(spec.method, spec.rewards, self.settings)
        if problems:
            raise ValidationError(problems)
        return spec

    def cancel(self, run_id: str) -> RunRecord:
        return self.supervisor.cancel(run_id)

    def list(self, status: str | None = None) -> list[RunRecord]:
        with self.db.transaction() as tx:
            return tx.runs.find(status=status) if status else tx.runs.list()

    def get(self, run_id: str) -> RunRecord:
        with self.db.transaction() as tx:
            run = tx.runs.get(run_id)
        if run is None:
            raise NotFoundError("run", run_id, RUN_RULE)
        return run

    def metrics(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        self.get(run_id)
        with self.db.transaction() as tx:
            return tx.metric_points.series(run_id)

    def log_tail(self, run_id: str, chars: int = 4000) -> str:
        log = run_log(self.settings, self.get(run_id))  # inside the run's own folder (DB-003)
        return read_tail(str(log) if log else None, chars)

    def wait(self, run_id: str, timeout_s: float = 3600, on_tick=None) -> RunRecord:
        """Supervise until the run ends (the CLI's --wait); ``on_tick(run)`` sees each update."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.supervisor.tick()
            run = self.get(run_id)
            if on_tick:
                on_tick(run)
            if run.status in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise NotFoundError("finished run", run_id)
            time.sleep(self.supervisor.poll_interval_s)
