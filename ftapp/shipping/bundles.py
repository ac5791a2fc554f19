"""Past one machine: a training run exported as a self-contained bundle for a cluster, and imported back.

Several GPUs of one host need none of this (the supervisor already runs ``accelerate launch``).
For several hosts, ``export`` writes a folder a cluster can run without ftapp: the run's spec with
every path made relative to the bundle (local data and a small enough local model copied in, Hub
ids referenced), a copy of the ``trainer`` package (the entry point), an accelerate multi-node
config, a launch script for Slurm (or one local process), and the exact library versions. The
trainer there writes the same ``run/events.jsonl``; ``import_run`` copies the finished run into the
home, feeds its events through the same ingest as a local run, and registers the adapter with its
lineage. Nothing here schedules anything: Slurm and accelerate do.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.errors import FtappError, NotFoundError, Problem, ValidationError
from ftapp.home_paths import run_folder
from ftapp.ids import new_id
from ftapp.models.adapters import AdapterService, AddAdapterRequest
from ftapp.resource_names import adapter_name_problem
from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs.enqueue import create_run
from ftapp.runs.ingest import ingest
from ftapp.runs.outcome import output_on_disk, read_outcome
from ftapp.settings import Settings
from ftapp.shipping import bundle_files
from storage import AdapterRecord, Database, RunRecord, Transaction
from trainer.protocol import EVENTS_FILE, LOG_FILE, SPEC_FILE, ModelSource, TrainSpec, parse_event, read_spec, write_spec

BUNDLE_FORMAT = "ftapp-bundle"
MANIFEST = "bundle.json"
RUN_DIR = "run"  # the bundle's run directory, relative to the bundle
COPY_LIMIT_BYTES = 2 * 1024**3  # a local model larger than this is referenced by its path, not copied
SKIPPED_ON_IMPORT = ("checkpoints",)  # optimizer state of the cluster run: large, and not needed here


@dataclass(frozen=True)
class BundleRequest:
    run_id: str
    out_dir: str
    nodes: int = 1
    gpus_per_node: int = 1
    device: str = "cuda"  # "cpu" makes a bundle one CPU process can run (a dry run of the whole path)
    copy_limit_bytes: int = COPY_LIMIT_BYTES


@dataclass(frozen=True)
class Bundle:
    path: Path
    copied: list[str] = field(default_factory=list)
    referenced: list[str] = field(default_factory=list)  # paths or Hub ids the cluster must reach itself


@dataclass(frozen=True)
class ImportedRun:
    run: RunRecord
    adapter: AdapterRecord | None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, target)


def _time(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds is not None else None


class BundleService:
    def __init__(self, settings: Settings, db: Database, adapters: AdapterService):
        self.settings, self.db, self.adapters = settings, db, adapters

    # -- export ---------------------------------------------------------------------------------
    def _export_problems(self, request: BundleRequest, run: RunRecord) -> list[Problem]:
        problems = []
        if run.kind != RunKind.FINETUNE:
            problems.append(Problem(rules.BUNDLE_REQUEST, f"run {run.id} is an {run.kind} run; only training runs make bundles", "run_id"))
        counts = (
            nb.NODES.problem(rules.BUNDLE_REQUEST, "nodes", request.nodes),
            nb.GPUS_PER_NODE.problem(rules.BUNDLE_REQUEST, "gpus_per_node", request.gpus_per_node),
        )
        problems += [problem for problem in counts if problem]
        if request.device not in ("cuda", "cpu"):
            problems.append(Problem(rules.BUNDLE_REQUEST, f"device must be cuda or cpu (got {request.device!r})", "device"))
        elif request.device == "cpu" and request.nodes * request.gpus_per_node != 1:
            problems.append(Problem(rules.BUNDLE_REQUEST, "a CPU bundle runs one process: nodes 1, gpus_per_node 1", "device"))
        out = Path(request.out_dir).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            problems.append(Problem(rules.BUNDLE_REQUEST, f"{out} exists and is not an empty folder", "out_dir"))
        return problems

    def export(self, request: BundleRequest) -> Bundle:
        with self.db.transaction() as tx:
            run = tx.runs.get(request.run_id)
        if run is None:
            raise NotFoundError("run", request.run_id)
        problems = self._export_problems(request, run)
        if problems:
            raise ValidationError(problems)
        spec = read_spec(run_folder(self.settings, run) / SPEC_FILE)  # the run's own folder (DB-003)
        out = Path(request.out_dir).expanduser().resolve()
        staging = out.with_name(f".{out.name}.partial")  # renamed into place once complete
        shutil.rmtree(staging, ignore_errors=True)
        try:
            bundle = self._write(staging, spec, run, request)
            if out.exists():
                out.rmdir()
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return replace(bundle, path=out)

    def _write(self, staging: Path, spec: TrainSpec, run: RunRecord, request: BundleRequest) -> Bundle:
        copied: list[str] = []
        referenced: list[str] = []

        def bring(source: str | None, target: str, limit: int | None = None) -> str | None:
            """``source`` copied to ``target`` in the bundle when it is local (and small enough), else referenced."""
            if not source:
                return source
            path = Path(source)
            if path.exists() and (limit is None or _size(path) <= limit):
                _copy(path, staging / target)
                copied.append(target)
                return target
            referenced.append(source)
            return source

        staging.mkdir(parents=True)
        trainer = find_spec("trainer")
        assert trainer is not None and trainer.submodule_search_locations, "the trainer package is installed with ftapp"
        package = Path(list(trainer.submodule_search_locations)[0])
        _copy(package, staging / "trainer")
        model_source = bring(spec.model.source, "model", request.copy_limit_bytes) or spec.model.source
        data_path = bring(spec.data.path, f"data/{Path(spec.data.path).name}") if spec.data.path else None
        rewards = tuple(
            replace(r, code_path=bring(r.code_path, f"rewards/{i}-{Path(r.code_path).name}")) if r.code_path else r
            for i, r in enumerate(spec.rewards)
        )
        processes = request.nodes * request.gpus_per_node
        bundled = replace(
            spec,
            run_dir=RUN_DIR,
            model=ModelSource(model_source, spec.model.architecture, spec.model.revision),
            data=replace(spec.data, path=data_path),
            init_adapter=bring(spec.init_adapter, "init_adapter"),
            rewards=rewards,
            resume_from=None,
            mlflow_tracking_uri=None,
            device=request.device,
            num_processes=processes,
        )
        write_spec(bundled, staging / SPEC_FILE)
        (staging / RUN_DIR).mkdir()
        (staging / "accelerate_config.yaml").write_text(bundle_files.accelerate_config(request.nodes, request.gpus_per_node))
        launch = staging / "launch.sh"
        launch.write_text(bundle_files.launch_script(spec.verb, request.gpus_per_node))
        launch.chmod(0o755)
        (staging / "slurm.sbatch").write_text(bundle_files.slurm_job(spec.adapter_name, request.nodes, request.gpus_per_node))
        (staging / "requirements.txt").write_text(bundle_files.pinned_requirements(package))
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": 1,
            "exported_at": datetime.now(UTC).isoformat(),
            "source_run_id": run.id,
            "adapter_name": spec.adapter_name,
            "method": spec.method,
            "training_mode": spec.training_mode,
            "base_model_id": run.base_model_id,
            "dataset_id": run.dataset_id,
            "prompt_id": run.prompt_id,
            "nodes": request.nodes,
            "gpus_per_node": request.gpus_per_node,
            "device": request.device,
            "copied": copied,
            "referenced": referenced,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return Bundle(staging, copied, referenced)

    # -- import ---------------------------------------------------------------------------------
    def _read_manifest(self, directory: Path) -> dict[str, Any]:
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValidationError(
                Problem(rules.BUNDLE_IMPORT, f"{directory} is not an ftapp bundle ({MANIFEST}: {error})", "directory")
            ) from error
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ValidationError(Problem(rules.BUNDLE_IMPORT, f"{directory / MANIFEST} is not an ftapp bundle manifest", "directory"))
        return manifest

    def import_run(self, directory: str | Path, adapter_name: str | None = None) -> ImportedRun:
        """Register the bundle's finished run (events, metrics, adapter) as a run of this home."""
        source = Path(directory).expanduser().resolve()
        manifest = self._read_manifest(source)
        name = adapter_name or manifest["adapter_name"]
        problems = [invalid] if (invalid := adapter_name_problem(rules.ADAPTER_REGISTERED_NAME, name, "adapter_name")) else []
        if not (source / RUN_DIR / EVENTS_FILE).is_file():
            problems.append(Problem(rules.BUNDLE_IMPORT, f"{source / RUN_DIR / EVENTS_FILE} is missing: run launch.sh first", "directory"))
        with self.db.transaction() as tx:
            if tx.models.get(manifest.get("base_model_id") or "") is None:
                problems.append(
                    Problem(rules.BUNDLE_IMPORT, f"the base model {manifest.get('base_model_id')} is not registered here", "directory")
                )
            if tx.adapters.find_one(name=name):
                problems.append(
                    Problem(rules.BUNDLE_IMPORT, f"an adapter named '{name}' exists; import under another name", "adapter_name")
                )
            known = {
                key: manifest.get(key) if manifest.get(key) and getattr(tx, table).get(manifest[key]) else None
                for key, table in (("dataset_id", "datasets"), ("prompt_id", "prompts"), ("source_run_id", "runs"))
            }
        if problems:
            raise ValidationError(problems)
        run_id = new_id()
        run_dir = self.settings.runs_dir / run_id
        try:
            return self._register(source, run_dir, run_id, name, manifest, known)
        except BaseException:
            with self.db.transaction() as tx:
                if tx.runs.get(run_id):
                    tx.runs.remove(run_id)  # its metric points and artifacts go with it
            shutil.rmtree(run_dir, ignore_errors=True)
            raise

    def _register(
        self, source: Path, run_dir: Path, run_id: str, name: str, manifest: dict[str, Any], known: dict[str, str | None]
    ) -> ImportedRun:
        spec = replace(read_spec(source / SPEC_FILE), run_id=run_id, run_dir=str(run_dir), adapter_name=name)
        log_name = next((n for n in (LOG_FILE, "trainer.node0.log") if (source / RUN_DIR / n).is_file()), LOG_FILE)
        times: list[float] = []

        def bring_files(folder: Path) -> None:
            shutil.copytree(source / RUN_DIR, folder, ignore=shutil.ignore_patterns(*SKIPPED_ON_IMPORT), dirs_exist_ok=True)
            times.extend(self._relocate_events(folder / EVENTS_FILE, source / RUN_DIR, folder))

        def settle(tx: Transaction, run: RunRecord) -> None:
            # The run ended on the cluster: its events are ingested and its end decided in the transaction that adds
            # its row, so no supervisor ever sees it queued (to launch) or running (to watch).
            ingest(tx, run)
            outcome = read_outcome(tx.runs.get(run.id) or run, tx.artifacts.find(run_id=run.id))
            values: dict[str, Any] = {"started_at": _time(times[0]), "finished_at": _time(times[-1])}
            if outcome.done and output_on_disk(outcome) is not None:
                values.update(status=RunStatus.SUCCEEDED, exit_code=0)
            else:
                error_type, message = outcome.failure or ("", "the bundle's run ended without a done event and an output")
                values.update(status=RunStatus.FAILED, error_cause="bundle run failed", error_text=f"{error_type}: {message}".strip(": "))
            tx.runs.update(run.id, **values)

        run = create_run(
            self.settings,
            self.db,
            spec,
            kind=RunKind.FINETUNE,
            name=name,
            prepare=bring_files,
            also=settle,
            log_path=str(run_dir / log_name),
            base_model_id=manifest["base_model_id"],
            dataset_id=known["dataset_id"],
            prompt_id=known["prompt_id"],
            parent_run_id=known["source_run_id"],
            devices_requested="cluster",
            gpus=f"{manifest['nodes']}×{manifest['gpus_per_node']} {manifest['device']}",
        )
        if run.status != RunStatus.SUCCEEDED:
            return ImportedRun(run, None)
        with self.db.transaction() as tx:
            output = output_on_disk(read_outcome(run, tx.artifacts.find(run_id=run_id)))
        if output is None:  # it was there a moment ago, when the run was settled
            raise FtappError(f"the output of the bundle's run vanished from {run_dir} while it was imported")
        adapter = self.adapters.add(
            AddAdapterRequest(
                name=name,
                model_id=manifest["base_model_id"],
                location=str(output),
                run_id=run_id,
                prompt_id=known["prompt_id"],
                description=f"{spec.method} {spec.training_mode} run {run_id}, "
                f"trained from bundle {source.name} on {manifest['nodes']}×{manifest['gpus_per_node']} {manifest['device']}",
            )
        )
        return ImportedRun(run, adapter)

    @staticmethod
    def _relocate_events(path: Path, old_run_dir: Path, new_run_dir: Path) -> list[float]:
        """Point the artifact events at the imported copy (the cluster wrote paths relative to the bundle,
        or absolute ones under its run folder); returns the event times, oldest first."""
        lines, times = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            event = parse_event(line)
            if event is None:
                lines.append(line)  # kept: ingest counts it as malformed, as it would have locally
                continue
            times.append(event.time)
            raw = event.data.get("path")
            if event.type == "artifact" and isinstance(raw, str):
                where = Path(raw)
                inside = (
                    where.relative_to(old_run_dir)
                    if where.is_absolute() and where.is_relative_to(old_run_dir)
                    else (where.relative_to(RUN_DIR) if not where.is_absolute() and where.parts[:1] == (RUN_DIR,) else None)
                )
                if inside is not None:
                    event = replace(event, data={**event.data, "path": str(new_run_dir / inside)})
            lines.append(event.to_line().rstrip("\n"))
        if not times:
            raise FtappError(f"{path} holds no events")
        temp = path.with_name(path.name + ".partial")
        temp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(temp, path)
        return times
