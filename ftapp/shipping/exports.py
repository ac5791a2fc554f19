"""Export use cases: check, submit (one supervised ``python -m trainer export`` run), list, results, the archive file.

Every action is a run, so a merge on a GPU or a multi-gigabyte upload outlives the page that asked
for it, shows up in the Runs tab with its log, and can be cancelled. Validation happens before the
run directory exists: a refused request writes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.run_vocabulary import RunStatus
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.supervisor import EXPORT, Supervisor
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from ftapp.shipping.export_request import ExportRequest, validate_export, with_defaults
from ftapp.shipping.export_results import ExportResult, build_result
from ftapp.shipping.model_card import render_card
from storage import Database, RunRecord, Transaction
from trainer.protocol import LOG_FILE, ExportSpec, ModelSource, write_spec

CARD_FILE = "README.md"


class ExportService:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor):
        self.settings, self.db, self.supervisor = settings, db, supervisor
        self.token = HfToken(settings.secrets_dir)

    def prepare(self, request: ExportRequest) -> ExportRequest:
        """The request with what can be inferred filled in (the run's adapter, its base model, a name)."""
        with self.db.transaction() as tx:
            return with_defaults(tx, request)

    def check(self, request: ExportRequest, machine: Machine | None = None) -> list[Problem]:
        request = self.prepare(request)
        with self.db.transaction() as tx:
            if machine is None and request.action == "merge":  # only a merge computes; nvidia-smi is slow to ask
                machine = detect_machine()
            problems = validate_export(tx, request, machine, has_token=bool(self.token.value()), offline=self.settings.offline)
        if request.action == "register" and not self.settings.mlflow_enabled:
            problems.append(Problem("EX-007", "register needs MLflow, which FTAPP_MLFLOW=0 turns off", "action"))
        return problems

    def submit(self, request: ExportRequest, machine: Machine | None = None) -> RunRecord:
        request = self.prepare(request)
        problems = self.check(request, machine)
        if problems:
            raise ValidationError(problems)
        run_id = new_id()
        run_dir = self.settings.runs_dir / run_id
        with self.db.transaction() as tx:
            spec = self._spec(tx, request, run_id, run_dir)
        run_dir.mkdir(parents=True)
        try:
            write_spec(spec)
            with self.db.transaction() as tx:
                run = tx.runs.add(
                    id=run_id, kind=EXPORT, name=f"{request.action} {request.model_name}"[:200], status=RunStatus.QUEUED,
                    spec=json.dumps(spec.to_dict()), run_dir=str(run_dir), log_path=str(run_dir / LOG_FILE),
                    base_model_id=request.base_model_id or None, adapter_id=request.adapter_id or None,
                    # Only a merge computes; archives, uploads and registrations need no GPU.
                    devices_requested=request.gpus if request.action == "merge" else "cpu",
                )
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        self.supervisor.wake()
        return run

    def _spec(self, tx: Transaction, request: ExportRequest, run_id: str, run_dir: Path) -> ExportSpec:
        model = tx.models.get(request.base_model_id)
        adapter = tx.adapters.get(request.adapter_id) if request.adapter_id else None
        assert model is not None, "validate the request first"
        source = adapter.location if adapter else model.location
        assert source, "validate the request first"
        keep_own_card = adapter is None and (Path(source) / CARD_FILE).is_file()  # a merge wrote it, verification included
        card = "" if keep_own_card else render_card(tx, request.model_name, model, adapter, merged=request.action == "merge",
                                                    secrets=[self.token.value()])
        return ExportSpec(
            run_id=run_id, run_dir=str(run_dir), action=request.action, source=source, name=request.model_name,
            model_card=card, base=ModelSource(model.source, model.architecture) if adapter else None,
            training_mode=_training_mode(tx, adapter.run_id) if adapter else None,
            repo_id=request.repo_id or None, private=request.private,
            archive_dir=str(self.settings.exports_dir / run_id) if request.action == "archive" else None,
            mlflow_tracking_uri=self.settings.mlflow_tracking_uri if self.settings.mlflow_enabled else None,
        )

    def list(self) -> list[RunRecord]:
        """Export runs, newest first."""
        with self.db.transaction() as tx:
            return list(reversed(tx.runs.find(kind=EXPORT)))

    def result(self, run_id: str) -> ExportResult:
        return build_result(self._export_run(run_id), self.settings.mlflow_tracking_uri)

    def archive_file(self, run_id: str) -> Path:
        """The finished archive of an archive run: fails closed unless the run succeeded and the file is complete."""
        run = self._export_run(run_id)
        if run.status != RunStatus.SUCCEEDED:
            raise ConflictError(f"export {run_id[:8]} is {run.status}: there is no archive to download")
        with self.db.transaction() as tx:
            recorded = [a for a in tx.artifacts.find(run_id=run_id) if a.kind == "archive"]
        if not recorded:
            raise NotFoundError("archive of export run", run_id)
        path = Path(recorded[-1].path)
        if not path.resolve().is_relative_to(self.settings.exports_dir.resolve()):
            raise ConflictError(f"the archive {path} is outside {self.settings.exports_dir}; it is not offered for download")
        if not path.is_file() or (recorded[-1].size_bytes is not None and path.stat().st_size != recorded[-1].size_bytes):
            raise ConflictError(f"the archive {path} is missing or was changed since the export wrote it; export it again")
        return path

    def _export_run(self, run_id: str) -> RunRecord:
        with self.db.transaction() as tx:
            run = require_found(tx.runs.get(run_id), "run", run_id)
        if run.kind != EXPORT:
            raise ConflictError(f"run {run_id} is a {run.kind} run, not an export")
        return run


def _training_mode(tx: Transaction, run_id: str | None) -> str | None:
    run = tx.runs.get(run_id) if run_id else None
    try:
        return json.loads(run.spec).get("training_mode") if run else None
    except ValueError:
        return None
