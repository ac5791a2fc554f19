"""MLflow tracking of a run: its settings as params, every logged number as a metric, the result as artifacts.

Logged through an explicit ``MlflowClient`` and our own callback rather than ``report_to="mlflow"``:
the tracking URI comes from the spec, so the child's environment needs no ``MLFLOW_*`` variables
and nothing leaks into a global "active run". Creating the run is allowed to fail the run (better
now than after hours of training with nothing recorded); a metric write that fails later (say the
SQLite file is busy) is reported once on stderr and training goes on.

A new experiment on a ``sqlite:///<dir>/mlflow.db`` store keeps its artifacts in ``<dir>/mlartifacts``
(where the app's ``mlflow ui`` looks), not in a ``mlruns`` folder under whatever the working directory is.
So does MLflow's own Default experiment, which the store creates the first time it is opened:
``tracking_client`` opens a new store with that artifact root before any client does (a client would give
it ``./mlruns``, the run folder of whichever run came first).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trainer.protocol import TrainSpec, reward_names
from trainer.run_events import finite

PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call
MAX_PARAM_CHARS = 6000
# Full fine-tuning writes gigabytes of weights; the tracking store gets the small files and the path.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def run_params(spec: TrainSpec, notes: list[str]) -> dict[str, str]:
    params: dict[str, Any] = {
        "run_id": spec.run_id,
        "method": spec.method,
        "training_mode": spec.training_mode,
        "device": spec.device,
        "adapter_name": spec.adapter_name,
        "model.source": spec.model.source,
        "model.revision": spec.model.revision,
        "data.kind": spec.data.kind,
        "data.path": spec.data.path,
        "data.hub_name": spec.data.hub_name,
        "data.format": spec.data.format,
        "data.fraction": spec.data.fraction,
        "data.train_split": spec.data.train_split,
        "data.seed": spec.data.seed,
        "resume_from": spec.resume_from,
    }
    params.update({f"training.{key}": value for key, value in spec.training.items()})
    params.update({f"lora.{key}": value for key, value in spec.lora.items()})
    params.update({f"bitsandbytes.{key}": value for key, value in (spec.bitsandbytes or {}).items()})
    params.update({f"{spec.method}.{key}": value for key, value in spec.method_settings.items()})  # DPO/GRPO settings
    params.update({f"reward.{name}": json.dumps(reward.to_dict()) for name, reward in zip(reward_names(spec.rewards), spec.rewards)})
    params["init_adapter"] = spec.init_adapter
    if notes:
        params["device_adjustments"] = "; ".join(notes)
    return {key: str(value)[:MAX_PARAM_CHARS] for key, value in params.items() if value is not None}


class RunTracking:
    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._warned = False

    @classmethod
    def start(cls, spec: TrainSpec, params: dict[str, str]) -> RunTracking:
        assert spec.mlflow_tracking_uri, "callers skip tracking when the spec has no tracking URI"
        client = tracking_client(spec.mlflow_tracking_uri)
        experiment = experiment_id(client, spec.mlflow_experiment, spec.mlflow_tracking_uri)
        run = client.create_run(experiment, run_name=spec.adapter_name, tags={"ftapp.run_id": spec.run_id})
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            client.log_batch(run.info.run_id, params=items[start : start + PARAMS_PER_BATCH])
        return cls(client, run.info.run_id)

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(key, number, now, step) for key, value in values.items() if (number := finite(value)) is not None]
        if not metrics:
            return
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
        except MlflowException as exc:
            if not self._warned:
                print(f"warning: MLflow metrics not recorded ({exc}); training continues", file=sys.stderr, flush=True)
                self._warned = True

    def log_output(self, output_dir: Path, *, include_weights: bool) -> None:
        """Copy the saved result into the run's artifacts (under ``output/``) and tag where it lives."""
        for path in sorted(output_dir.rglob("*")):
            if path.is_file() and (include_weights or path.suffix not in WEIGHT_SUFFIXES):
                folder = path.parent.relative_to(output_dir).as_posix()
                self.client.log_artifact(self.run_id, str(path), "output" if folder == "." else f"output/{folder}")
        self.client.set_tag(self.run_id, "ftapp.output_dir", str(output_dir))

    def finish(self, status: str) -> None:
        """End the MLflow run as FINISHED, FAILED or KILLED; a broken store must not mask the run's own outcome."""
        try:
            self.client.set_terminated(self.run_id, status=status)
        except MlflowException as exc:
            print(f"warning: MLflow run {self.run_id} not marked {status} ({exc})", file=sys.stderr, flush=True)

    def callback(self) -> TrainerCallback:
        return _MetricsCallback(self)


class _MetricsCallback(TrainerCallback):
    def __init__(self, tracking: RunTracking):
        self.tracking = tracking

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.tracking.log_metrics(logs or {}, state.global_step)


def tracking_client(tracking_uri: str) -> MlflowClient:
    """A client of the store (and its model registry); a new SQLite store is created with its Default experiment's
    artifacts under ``mlartifacts`` beside the database."""
    root = _artifact_location(tracking_uri)
    path = _sqlite_path(tracking_uri)
    if root is not None and path is not None and not path.is_file():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(tracking_uri, root)  # creates the tables and the Default experiment; a race is settled by MLflow
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(tracking_uri))
    except MlflowException:
        # Another run created it between our look-up and create; use theirs.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"  # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db
    return Path(tracking_uri[len(prefix) :]).resolve() if tracking_uri.startswith(prefix) else None


def _artifact_location(tracking_uri: str) -> str | None:
    path = _sqlite_path(tracking_uri)
    return (path.parent / "mlartifacts").as_uri() if path is not None else None
