"""Base-model use cases: register a Hub id, a local directory, a GGUF file (converted) or an MLflow-registered model."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ftapp import rules
from ftapp.demo.path_policy import path_problem
from ftapp.demo.policy import upload_only
from ftapp.demo.visitor import Visitor, require_own
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.hub_ids import hub_id_problem
from ftapp.ids import new_id
from ftapp.models.config_json import load_config_file, read_model_config
from ftapp.models.gguf import gguf_problems, import_gguf, looks_like_gguf
from ftapp.models.hub import inspect_hub_repo
from ftapp.models.registry import resolve_registered_model
from ftapp.resource_names import description_problem, name_problem
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from storage import Database, DuplicateError, ModelRecord
from storage.types import utc_now

MODEL_TYPES = ("huggingface", "project", "model_registry")


@dataclass(frozen=True)
class AddModelRequest:
    type: str = "huggingface"
    name: str = ""
    huggingface_name: str | None = None
    location: str | None = None
    registry_name: str | None = None
    registry_version: str | None = None
    description: str = ""


class ModelService:
    def __init__(self, settings: Settings, db: Database, visitor: Visitor | None = None):
        # Models have no owner: every demo visitor sees the same ones, and changes none of them.
        self.settings, self.db, self.visitor = settings, db, visitor
        self.token = HfToken(settings.secrets_dir)

    def add(self, request: AddModelRequest) -> ModelRecord:
        if self.visitor:
            raise ValidationError(upload_only("registering a model", "location"))
        problems: list[Problem] = []
        if request.type not in MODEL_TYPES:
            raise ValidationError(Problem(rules.MODEL_TYPE, f"type must be one of {', '.join(MODEL_TYPES)} (got {request.type!r})", "type"))
        source = {
            "huggingface": request.huggingface_name,
            "project": request.location,
            "model_registry": request.registry_name,
        }[request.type]
        source = (source or "").strip()
        # A file where a model folder is expected is a GGUF file to convert (MD-006); its stem names it by default.
        gguf = request.type == "project" and bool(source) and looks_like_gguf(Path(source).expanduser())
        name = (request.name or (Path(source).stem if gguf else source)).strip()
        if invalid := name_problem(rules.MODEL_NAME, name):
            problems.append(invalid)
        else:
            with self.db.transaction() as tx:
                if tx.models.find_one(name=name):
                    problems.append(Problem(rules.MODEL_NAME, f"a model named '{name}' already exists", "name"))
        if too_long := description_problem(rules.DESCRIPTION, request.description):
            problems.append(too_long)
        if request.type == "huggingface" and not source:
            problems.append(Problem(rules.MODEL_HUB_NAME, "huggingface_name is required for a Hub model", "huggingface_name"))
        elif request.type == "huggingface" and (invalid := hub_id_problem(rules.MODEL_HUB_NAME, source, "huggingface_name", "model")):
            problems.append(invalid)
        if request.type == "model_registry" and not source:
            problems.append(Problem(rules.MODEL_REGISTRY_NAME, "registry_name is required for a registry model", "registry_name"))
        if request.type == "project":
            outside = path_problem(self.settings, source or ".", rules.MODEL_LOCATION, "location")
            if outside:
                problems.append(outside)
            else:
                problems.extend(gguf_problems(Path(source).expanduser()) if gguf else self._directory_problems(source))
        if problems:
            raise ValidationError(problems)

        model_id = new_id()
        values: dict = {"name": name, "type": request.type, "description": request.description}
        if gguf:
            imported = import_gguf(self.settings, Path(source).expanduser().resolve(), model_id)
            config = load_config_file(imported.model_dir / "config.json")
            description = " ".join(part for part in (request.description.strip(), imported.source_note) if part)
            values.update(location=str(imported.model_dir), license=imported.license, description=description)
        elif request.type == "huggingface":
            repo = inspect_hub_repo(source, ("config.json",), rules.MODEL_HUB_NAME, self.token.value(), self.settings.offline)
            config = repo.files["config.json"] if "config.json" in repo.files else {}
            values.update(huggingface_name=source, gated=repo.gated, license=repo.license)
        elif request.type == "project":
            path = Path(source).expanduser().resolve()
            config = load_config_file(path / "config.json")
            values.update(location=str(path))
        else:
            version, path = resolve_registered_model(self.settings.mlflow_tracking_uri, source, request.registry_version)
            config = load_config_file(path / "config.json")
            values.update(registry_name=source, registry_version=version, location=str(path))
        info = read_model_config(config)
        values.update(architecture=info.architecture, model_type=info.model_type, num_parameters=info.num_parameters)
        try:
            with self.db.transaction() as tx:
                return tx.models.add(id=model_id, **values)
        except DuplicateError as error:
            if gguf:  # the converted folder is ours and nothing points at it
                shutil.rmtree(self.settings.models_dir / model_id, ignore_errors=True)
            raise ValidationError(Problem(rules.MODEL_NAME, f"a model named '{name}' already exists", "name")) from error

    @staticmethod
    def _directory_problems(location: str) -> list[Problem]:
        if not location:
            return [Problem(rules.MODEL_LOCATION, "location is required for a local model", "location")]
        path = Path(location).expanduser()
        if not path.is_dir():
            return [Problem(rules.MODEL_LOCATION, f"{path} is not a directory", "location")]
        config = path / "config.json"
        if not config.is_file():
            return [Problem(rules.MODEL_LOCATION, f"{path} has no config.json; point at the folder save_pretrained wrote", "location")]
        try:
            load_config_file(config)
        except (OSError, ValueError) as error:
            return [Problem(rules.MODEL_LOCATION, f"{config} is not readable JSON ({error})", "location")]
        return []

    def list(self) -> list[ModelRecord]:
        with self.db.transaction() as tx:
            return tx.models.list()

    def get(self, model_id: str) -> ModelRecord:
        with self.db.transaction() as tx:
            return require_found(tx.models.get(model_id), "model", model_id)

    def accept_license(self, model_id: str) -> ModelRecord:
        require_own(self.visitor, None, "model", self.get(model_id).name)
        with self.db.transaction() as tx:
            return tx.models.update(model_id, license_accepted_at=utc_now())

    def remove(self, model_id: str) -> None:
        with self.db.transaction() as tx:
            record = tx.models.get(model_id)
            if record is None:
                raise NotFoundError("model", model_id)
            require_own(self.visitor, None, "model", record.name)
            adapters = tx.adapters.find(model_id=model_id)
            if adapters:
                names = ", ".join(a.name for a in adapters)
                raise ConflictError(f"model '{record.name}' is the base of adapters {names}; remove them first")
            tx.models.remove(model_id)
