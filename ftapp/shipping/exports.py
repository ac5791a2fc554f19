"""Export use cases: check, submit (one supervised ``python -m trainer export`` run), list, results, the archive file.

A GGUF export carries how the adapter was trained to be prompted (``prompt_format``), for its Ollama Modelfile.

Every action is a run, so a merge on a GPU or a multi-gigabyte upload outlives the page that asked
for it, shows up in the Runs tab with its log, and can be cancelled. Validation happens before the
run directory exists: a refused request writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ftapp import rules
from ftapp.demo.live_runs import run_problems
from ftapp.demo.visitor import Visitor, visible_to
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs.enqueue import enqueue
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.specs import UnreadableSpecError, run_spec
from ftapp.runs.supervisor import Supervisor
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from ftapp.shipping.export_request import COMPUTING_ACTIONS, ExportRequest, validate_export, with_defaults
from ftapp.shipping.export_results import ExportResult, build_result
from ftapp.shipping.gguf_request import detect_gguf_tools
from ftapp.shipping.model_card import render_card
from ftapp.shipping.prompt_format import training_format
from storage import AdapterRecord, Database, ModelRecord, RunRecord, Transaction
from trainer.protocol import ExportSpec, ModelSource, TrainSpec

CARD_FILE = "README.md"


class ExportService:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor, visitor: Visitor | None = None):
        self.settings, self.db, self.supervisor = settings, visible_to(db, visitor), supervisor
        self.visitor, self.everyone = visitor, db  # the demo's caps count every visitor's runs
        self.token = HfToken(settings.secrets_dir)

    def prepare(self, request: ExportRequest) -> ExportRequest:
        """The request with what can be inferred filled in (the run's adapter, its base model, a name)."""
        with self.db.transaction() as tx:
            return with_defaults(tx, request)

    def check(self, request: ExportRequest, machine: Machine | None = None) -> list[Problem]:
        request = self.prepare(request)
        with self.db.transaction() as tx:
            if machine is None and request.action in COMPUTING_ACTIONS:  # only these compute; nvidia-smi is slow to ask
                machine = detect_machine()
            problems = validate_export(
                tx,
                request,
                machine,
                has_token=bool(self.token.value()),
                offline=self.settings.offline,
                caps=self.visitor.caps if self.visitor else None,
                gguf_tools=detect_gguf_tools() if request.action == "gguf" else None,
            )
        if request.action == "register" and not self.settings.mlflow_enabled:
            problems.append(Problem(rules.EXPORT_ACTION, "register needs MLflow, which FTAPP_MLFLOW=0 turns off", "action"))
        return problems + (run_problems(self.everyone, self.visitor) if self.visitor else [])

    def submit(self, request: ExportRequest, machine: Machine | None = None) -> RunRecord:
        request = self.prepare(request)
        problems = self.check(request, machine)
        if problems:
            raise ValidationError(problems)
        run_id = new_id()
        with self.db.transaction() as tx:
            spec = self._spec(tx, request, run_id, self.settings.runs_dir / run_id)
        return enqueue(
            self.db,
            self.supervisor,
            spec,
            kind=RunKind.EXPORT,
            name=f"{request.action} {request.model_name}"[:200],
            base_model_id=request.base_model_id or None,
            adapter_id=request.adapter_id or None,
            # Only a merge and a GGUF export compute; archives, uploads and registrations need no GPU.
            devices_requested=request.gpus if request.action in COMPUTING_ACTIONS else "cpu",
        )

    def _spec(self, tx: Transaction, request: ExportRequest, run_id: str, run_dir: Path) -> ExportSpec:
        model = tx.models.get(request.base_model_id)
        adapter = tx.adapters.get(request.adapter_id) if request.adapter_id else None
        assert model is not None, "validate the request first"
        source = adapter.location if adapter else model.location
        assert source, "validate the request first"
        keep_own_card = adapter is None and (Path(source) / CARD_FILE).is_file()  # a merge wrote it, verification included
        card = (
            ""
            if keep_own_card
            else render_card(tx, request.model_name, model, adapter, merged=request.action == "merge", secrets=[self.token.value()])
        )
        return ExportSpec(
            run_id=run_id,
            run_dir=str(run_dir),
            action=request.action,
            source=source,
            name=request.model_name,
            model_card=card,
            base=ModelSource(model.source, model.architecture) if adapter else None,
            training_mode=_training_mode(tx, adapter.run_id) if adapter else None,
            repo_id=request.repo_id or None,
            private=request.private,
            archive_dir=str(self.settings.exports_dir / run_id) if request.action == "archive" else None,
            mlflow_tracking_uri=self.settings.mlflow_tracking_uri if self.settings.mlflow_enabled else None,
            **(_gguf_fields(tx, request, model, adapter) if request.action == "gguf" else {}),
        )

    def list(self) -> list[RunRecord]:
        """Export runs, newest first."""
        with self.db.transaction() as tx:
            return list(reversed(tx.runs.find(kind=RunKind.EXPORT)))

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
        if run.kind != RunKind.EXPORT:
            raise ConflictError(f"run {run_id} is a {run.kind} run, not an export")
        return run


def _gguf_fields(tx: Transaction, request: ExportRequest, model: ModelRecord, adapter: AdapterRecord | None) -> dict:
    found = training_format(tx, model, adapter)
    return {"gguf_types": tuple(request.gguf_types), "prompt_format": found.prompt_format, "input_template": found.input_template}


def _training_mode(tx: Transaction, run_id: str | None) -> str | None:
    run = tx.runs.get(run_id) if run_id else None
    try:
        return run_spec(run, TrainSpec).training_mode if run else None
    except UnreadableSpecError:  # an imported row of another version: the merge notes go without it
        return None
