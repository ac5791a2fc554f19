"""Register an adapter or model directory in the MLflow model registry of the app's tracking store.

The files are logged as the artifacts of an MLflow run (under ``model/``, the model card as its
README.md) and a new version of the registered model points at them. An adapter's version carries
its base model as the tag ``ftapp.base_model`` (adapter_config.json may name a local path that means
nothing elsewhere). ftapp's ``models add --registry NAME`` loads a merged model back from there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from trainer.export.files import CARD_FILE, card_text, refuse_secrets, shipped_files
from trainer.protocol import DONE, STARTED, ExportSpec
from trainer.run_events import EventSink
from trainer.run_tracking import experiment_id

ARTIFACT_PATH = "model"


def source_kind(source: Path) -> str:
    return "adapter" if (source / "adapter_config.json").is_file() else "model"


def run_register(spec: ExportSpec, events: EventSink) -> bool:
    if not spec.mlflow_tracking_uri:
        raise ValueError("the spec has no MLflow tracking URI (FTAPP_MLFLOW=0?); nothing to register in")
    source = Path(spec.source)
    files, card = shipped_files(source), card_text(spec)
    refuse_secrets(source, files, card)
    kind = source_kind(source)
    client = MlflowClient(tracking_uri=spec.mlflow_tracking_uri, registry_uri=spec.mlflow_tracking_uri)
    experiment = experiment_id(client, spec.mlflow_experiment, spec.mlflow_tracking_uri)
    run = client.create_run(experiment, run_name=spec.name, tags={"ftapp.run_id": spec.run_id, "ftapp.export": kind})
    mlflow_run_id = run.info.run_id
    events.emit(STARTED, run_id=spec.run_id, action="register", mlflow_run_id=mlflow_run_id, kind=kind)
    try:
        _log_files(client, mlflow_run_id, source, files, card)
        tags = _version_tags(spec, kind)
        for key, value in tags.items():
            client.set_tag(mlflow_run_id, key, value)
        _ensure_registered_model(client, spec.name)
        version = client.create_model_version(spec.name, source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
                                              run_id=mlflow_run_id, tags=tags, description=f"ftapp export run {spec.run_id}")
    except BaseException:
        client.set_terminated(mlflow_run_id, status="FAILED")
        raise
    client.set_terminated(mlflow_run_id, status="FINISHED")
    events.emit(DONE, action="register", registered_model=spec.name, version=str(version.version), kind=kind,
                model_uri=f"models:/{spec.name}/{version.version}", mlflow_run_id=mlflow_run_id)
    return True


def _log_files(client: MlflowClient, run_id: str, source: Path, files: list[Path], card: str | None) -> None:
    for relative in files:
        folder = relative.parent.as_posix()
        client.log_artifact(run_id, str(source / relative), ARTIFACT_PATH if folder == "." else f"{ARTIFACT_PATH}/{folder}")
    if card is not None:
        with tempfile.TemporaryDirectory() as temp:
            path = Path(temp) / CARD_FILE
            path.write_text(card, encoding="utf-8")
            client.log_artifact(run_id, str(path), ARTIFACT_PATH)


def _version_tags(spec: ExportSpec, kind: str) -> dict[str, Any]:
    tags = {"ftapp.kind": kind, "ftapp.export_run_id": spec.run_id}
    if kind == "adapter" and spec.base is not None:
        tags["ftapp.base_model"] = spec.base.source
        if spec.base.revision:
            tags["ftapp.base_revision"] = spec.base.revision
    return tags


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, tags={"ftapp": "export"})
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
