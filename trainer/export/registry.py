"""Register an adapter or model directory in the MLflow model registry of the app's tracking store, as an MLflow model.

The version is a ``transformers``-flavoured MLflow model (an ``MLmodel`` with the transformers and pyfunc
flavours), so MLflow's own loaders (``mlflow.transformers.load_model``, ``mlflow.pyfunc.load_model``) and
``mlflow models serve`` take it as it is. A model is saved whole (its checkpoint under ``model/model``, where
ftapp's ``models add --registry`` finds it again). An adapter is saved as MLflow saves a
PEFT model: the adapter weights and the tokenizer, and its base by reference: a local base by its path
(``base_model_path``), a Hub base by its repo id. Its version also carries the base as the tag
``ftapp.base_model`` (adapter_config.json may name a local path that means nothing elsewhere). Only the shipped
files go in (``trainer.export.files``), with the model card as the MLflow model's card.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from trainer.export.files import CARD_FILE, card_text, refuse_secrets, shipped_files
from trainer.protocol import DONE, STARTED, ExportSpec, ModelSource
from trainer.run_events import EventSink
from trainer.run_tracking import experiment_id, tracking_client

ARTIFACT_PATH = "model"
TASK = "text-generation"


def source_kind(source: Path) -> str:
    return "adapter" if (source / "adapter_config.json").is_file() else "model"


def run_register(spec: ExportSpec, events: EventSink) -> bool:
    if not spec.mlflow_tracking_uri:
        raise ValueError("the spec has no MLflow tracking URI (FTAPP_MLFLOW=0?); nothing to register in")
    source = Path(spec.source)
    files, card = shipped_files(source), card_text(spec)
    refuse_secrets(source, files, card)
    kind = source_kind(source)
    if kind == "adapter" and spec.base is None:
        raise ValueError("spec.base is required to register an adapter: its MLflow model names the base it loads on")
    client = tracking_client(spec.mlflow_tracking_uri)
    experiment = experiment_id(client, spec.mlflow_experiment, spec.mlflow_tracking_uri)
    run = client.create_run(experiment, run_name=spec.name, tags={"ftapp.run_id": spec.run_id, "ftapp.export": kind})
    mlflow_run_id = run.info.run_id
    events.emit(STARTED, run_id=spec.run_id, action="register", mlflow_run_id=mlflow_run_id, kind=kind)
    try:
        _log_model(client, mlflow_run_id, run.info.artifact_uri, spec, source, files, card, kind)
        tags = _version_tags(spec, kind)
        for key, value in tags.items():
            client.set_tag(mlflow_run_id, key, value)
        _ensure_registered_model(client, spec.name)
        version = client.create_model_version(
            spec.name,
            source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
            run_id=mlflow_run_id,
            tags=tags,
            description=f"ftapp export run {spec.run_id}",
        )
    except BaseException:
        client.set_terminated(mlflow_run_id, status="FAILED")
        raise
    client.set_terminated(mlflow_run_id, status="FINISHED")
    events.emit(
        DONE,
        action="register",
        registered_model=spec.name,
        version=str(version.version),
        kind=kind,
        model_uri=f"models:/{spec.name}/{version.version}",
        mlflow_run_id=mlflow_run_id,
        flavor="transformers",
    )
    return True


def _log_model(
    client: MlflowClient, run_id: str, artifact_uri: str, spec: ExportSpec, source: Path, files: list[Path], card: str | None, kind: str
) -> None:
    """Save the MLflow model straight into the run's artifacts when they are a local folder (one copy of the
    weights), else into a temporary folder that is then uploaded."""
    with tempfile.TemporaryDirectory(dir=spec.run_dir) as temp:
        staged = _stage(source, files, Path(temp) / "source")
        local = _local_folder(artifact_uri)
        target = local / ARTIFACT_PATH if local is not None else Path(temp) / ARTIFACT_PATH
        _save(spec, staged, target, card, kind)
        if local is None:
            client.log_artifacts(run_id, str(target), ARTIFACT_PATH)


def _stage(source: Path, files: list[Path], folder: Path) -> Path:
    """The shipped files alone, as hard links where the file system allows (no copy of the weights)."""
    for relative in files:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / relative, target)
        except OSError:
            shutil.copy2(source / relative, target)
    return folder


def _local_folder(artifact_uri: str) -> Path | None:
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(unquote(parsed.path))


def _model_card(card: str | None) -> Any:
    if not card:
        return None
    from huggingface_hub import ModelCard

    return ModelCard(card)


def _save(spec: ExportSpec, staged: Path, target: Path, card: str | None, kind: str) -> None:
    """The model (or base + adapter) as a transformers pipeline, saved by MLflow's transformers flavour.

    A model is loaded rather than handed over as a folder: MLflow's "local checkpoint" path reads a pipeline class
    that transformers 5 no longer exposes. MLflow keeps the tokenizer apart (``components/tokenizer``) and the card
    at the top (``model_card.md``); copies of both in ``model/`` make that folder a whole checkpoint again, the one
    ``models add --registry`` reads.
    """
    import mlflow.transformers
    from transformers import AutoModelForCausalLM

    from trainer.export.merge import load_adapted
    from trainer.model_loading import load_tokenizer

    base_path = None
    if kind == "adapter":
        assert spec.base is not None, "run_register checked it"
        model, tokenizer = load_adapted(spec.base, staged, "cpu")
        base_dir = Path(spec.base.source).expanduser()
        base_path = str(base_dir) if base_dir.is_dir() else None  # a Hub base is named by its repo id instead
    else:
        model, tokenizer = AutoModelForCausalLM.from_pretrained(staged, dtype="auto"), load_tokenizer(ModelSource(str(staged)))
    mlflow.transformers.save_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        path=str(target),
        task=TASK,
        model_card=_model_card(card),
        base_model_path=base_path,
        pip_requirements=requirements(kind),
        signature=_signature(model.generation_config),
    )
    if kind == "model":
        tokenizer.save_pretrained(target / "model")
        if card is not None:
            (target / "model" / CARD_FILE).write_text(card, encoding="utf-8")


def _signature(generation: Any) -> Any:
    """Prompts in, answers out, and the generation settings a caller may pass as ``params`` (MLflow ignores any
    param its signature does not declare); the defaults are the model's own, greedy unless it samples."""
    from mlflow.models import infer_signature

    params = {
        "max_new_tokens": int(generation.max_new_tokens or 256),
        "do_sample": bool(generation.do_sample),
        "temperature": float(generation.temperature or 1.0),
        "top_p": float(generation.top_p or 1.0),
        "repetition_penalty": float(generation.repetition_penalty or 1.0),
    }
    return infer_signature(["a prompt"], ["an answer"], params=params)


def requirements(kind: str) -> list[str]:
    """What loading the model needs, pinned to what is installed (MLflow's own guess asks for torchvision, which a
    text model never imports and this environment may not have)."""
    names = ["mlflow", "torch", "transformers", "tokenizers", "accelerate", "safetensors"] + (["peft"] if kind == "adapter" else [])
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


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
