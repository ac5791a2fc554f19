"""Run use cases: check (validation + preflight), submit, list, inspect, cancel, resume, wait."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import replace

from ftapp import rules
from ftapp.datasets.service import DatasetService
from ftapp.demo.live_runs import adapter_name_problem, run_problems
from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.home_paths import run_folder, run_log
from ftapp.ids import new_id
from ftapp.models.config_json import read_local_model_config
from ftapp.run_vocabulary import RESUMABLE, TERMINAL, RunKind
from ftapp.runs.axolotl_request import preflight_inputs, with_generated_prompt
from ftapp.runs.devices import choose_devices
from ftapp.runs.enqueue import enqueue
from ftapp.runs.failure_causes import read_tail
from ftapp.runs.fine_tune_request import FineTuneRequest, cap_problems, lora_values, training_values, validate_fine_tune
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.method_request import reward_problems
from ftapp.runs.method_time import expected_generation_engine
from ftapp.runs.preflight import Preflight, estimate, kv_size
from ftapp.runs.run_timing import StepKind, measured_timing
from ftapp.runs.specs import build_train_spec, run_spec
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import Database, RunRecord
from trainer.protocol import AUTO_DEVICE, TrainSpec

PREFLIGHT_SAMPLE_ROWS = 50


class RunService:
    def __init__(self, settings: Settings, db: Database, datasets: DatasetService, supervisor: Supervisor, visitor: Visitor | None = None):
        self.settings, self.db, self.datasets, self.supervisor = settings, visible_to(db, visitor), datasets, supervisor
        self.visitor, self.everyone = visitor, db  # the demo's caps count every visitor's runs

    def check(self, request: FineTuneRequest, machine: Machine | None = None) -> tuple[list[Problem], Preflight | None]:
        """Every problem of the request, and the preflight estimate when the request is otherwise valid."""
        machine = machine or detect_machine()
        with self.db.transaction() as tx:
            problems = validate_fine_tune(tx, request, machine, self.settings)
            capped = cap_problems(tx, request, self.visitor.caps) if self.visitor else []
            if problems:
                return problems + capped + self._shared_problems(request, problems), None
            # validate_fine_tune found both (FT-013, FT-014); a concurrent remove is a plain not-found
            model = require_found(tx.models.get(request.base_model_id), "model", request.base_model_id)
            dataset = require_found(tx.datasets.get(request.dataset_id), "dataset", request.dataset_id)
            prompt = tx.prompts.get(request.prompt_id) if request.prompt_id else None
            training = training_values(tx, request)
            lora_rank = int(lora_values(tx, request).get("r") or 16)
            training_mode = request.training_mode
            if axolotl := preflight_inputs(tx, request):  # the YAML decides an Axolotl run's settings
                training, training_mode, lora_rank = axolotl
        devices, device_problems = choose_devices(request.gpus, machine, rules.TRAIN_DEVICES)
        if devices is None:  # validate_fine_tune reported FT-005 already unless the GPUs changed since
            return problems + device_problems, None
        with self.everyone.transaction() as tx:  # every visitor's runs time the same machine
            engine = expected_generation_engine(devices.kind, training_mode) if request.method == "grpo" else None
            timing = measured_timing(tx, devices.kind, StepKind(model.id, request.method, training_mode, engine))
        config = read_local_model_config(model.location) if model.location else None
        rows = self.datasets.read_rows(dataset, 0, PREFLIGHT_SAMPLE_ROWS) if dataset.type != "huggingface" else []
        train_rows = int((dataset.num_rows or len(rows)) * request.dataset_fraction * request.train_test_split)
        preflight = estimate(
            num_parameters=model.num_parameters or 0,
            hidden_size=int((config or {}).get("hidden_size") or 0),
            num_layers=int((config or {}).get("num_hidden_layers") or 0),
            training_mode=training_mode,
            training=training,
            train_rows=train_rows,
            sample_rows=rows,
            template=prompt.prompt_template if prompt else None,
            devices=devices,
            machine=machine,
            method=request.method,
            method_settings=request.method_settings,
            input_template=prompt.input_template if prompt else None,
            kv_units=kv_size(config or {}),
            config=config,
            lora_rank=lora_rank,
            timing=timing,
            strategy=request.strategy,
            processes=request.num_processes,
        )
        if model.num_parameters and not preflight.fits:
            # Planned (a GPU and the model's config): no recipe fits and the advice says what would; otherwise generic.
            would = "" if preflight.advice else "; use QLoRA, a smaller micro-batch or max_length, or another device"
            problems.append(Problem(rules.TRAIN_MEMORY_FITS, f"does not fit: {preflight.summary()}{would}", "memory"))
        return problems + capped + self._shared_problems(request, problems), preflight

    def _shared_problems(self, request: FineTuneRequest, problems: list[Problem]) -> list[Problem]:
        """What a demo visitor's run shares with every other visitor's: adapter names and the slots for concurrent runs."""
        if not self.visitor:
            return []
        said = any(p.rule == rules.ADAPTER_NAME for p in problems)  # the visitor's own adapter has the name: said once
        clash = adapter_name_problem(self.everyone, request.adapter_name) if request.adapter_name and not said else None
        return ([clash] if clash else []) + run_problems(self.everyone, self.visitor)

    def submit(self, request: FineTuneRequest, machine: Machine | None = None) -> tuple[RunRecord, Preflight]:
        """Queue a run; returns it with the preflight estimate the user should see."""
        problems, preflight = self.check(request, machine)
        if problems:
            raise ValidationError(problems)
        assert preflight is not None, "check estimates whenever it finds no problem"
        with self.db.transaction() as tx:
            request, generated_prompt = with_generated_prompt(tx, request)  # an Axolotl run given no prompt
            spec = build_train_spec(tx, self.settings, request, new_id(), device=AUTO_DEVICE, strategy=preflight.strategy)
        try:
            run = enqueue(
                self.db,
                self.supervisor,
                spec,
                kind=RunKind.FINETUNE,
                name=request.adapter_name,
                base_model_id=request.base_model_id,
                dataset_id=request.dataset_id,
                prompt_id=request.prompt_id,
                devices_requested=request.gpus,
                adapter_id=request.init_adapter_id,
            )  # the adapter it starts from (DPO/GRPO), for lineage
        except Exception:
            if generated_prompt:  # a refused run leaves nothing behind
                with self.db.transaction() as tx:
                    tx.prompts.remove(generated_prompt)
            raise
        return run, preflight

    def resume(self, run_id: str) -> RunRecord:
        """A new run that continues the given one from its last checkpoint (optimizer state included)."""
        busy = run_problems(self.everyone, self.visitor) if self.visitor else []
        if busy:
            raise ValidationError(busy)
        old = self.get(run_id)
        if old.kind != RunKind.FINETUNE:
            raise ConflictError(f"run {run_id} is an {old.kind} run; only training runs resume from a checkpoint")
        if old.status not in RESUMABLE:
            raise ConflictError(f"run {run_id} is {old.status}; only a failed or cancelled run can be resumed")
        folder = run_folder(self.settings, old)  # the run's own folder, never one its row (or an import) points at
        checkpoints = sorted(
            folder.glob("checkpoints/checkpoint-*"),
            key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1,
        )
        if not checkpoints:
            raise ConflictError(f"run {run_id} wrote no checkpoint to resume from")
        spec = self._resumable_spec(old)
        new_run_id = new_id()
        spec = replace(spec, run_id=new_run_id, run_dir=str(folder.parent / new_run_id), resume_from=str(checkpoints[-1]))
        return enqueue(
            self.db,
            self.supervisor,
            spec,
            kind=RunKind.FINETUNE,
            name=old.name,
            base_model_id=old.base_model_id,
            dataset_id=old.dataset_id,
            prompt_id=old.prompt_id,
            parent_run_id=old.id,
            adapter_id=old.adapter_id,
            devices_requested=old.devices_requested,
        )

    def _resumable_spec(self, run: RunRecord) -> TrainSpec:
        """The spec ftapp stored in the run's row at submit (not a spec.json its folder may hold), checked again as a
        new request would be: the row may have come from an import, and resuming launches what it says."""
        spec = run_spec(run, TrainSpec)  # UnreadableSpecError (a ConflictError) for a row that does not parse
        problems = reward_problems(spec.method, spec.rewards, self.settings)
        if problems:
            raise ValidationError(problems)
        return spec

    def cancel(self, run_id: str) -> RunRecord:
        if self.visitor:  # the supervisor sees every run: a visitor cancels only one it sees, and owns
            run = self.get(run_id)
            require_own(self.visitor, run.owner, "run", run.name or run.id)
        return self.supervisor.cancel(run_id)

    def list(self, status: str | None = None) -> list[RunRecord]:
        with self.db.transaction() as tx:
            return tx.runs.find(status=status) if status else tx.runs.list()

    def get(self, run_id: str) -> RunRecord:
        with self.db.transaction() as tx:
            run = tx.runs.get(run_id)
        if run is None:
            raise NotFoundError("run", run_id, rules.RUN_EXISTS)
        return run

    def fine_tunes(self, run_ids: Sequence[str]) -> builtins.list[RunRecord]:
        """The training runs ``run_ids`` name, in order, for a side-by-side comparison; any other kind of run (an
        evaluation, an export, a server) has no loss curve or training settings to compare and is refused."""
        found = [self.get(run_id) for run_id in run_ids]
        for run in found:
            if run.kind != RunKind.FINETUNE:
                raise ConflictError(f"run {run.id} is a run of kind {run.kind}; only training runs are compared")
        return found

    def metrics(self, run_id: str) -> dict[str, builtins.list[tuple[int, float]]]:  # builtins: ``list`` is the method
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
