"""Adapter use cases: register a local PEFT directory or a Hub adapter, with its base model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ftapp import rules
from ftapp.demo.path_policy import path_problem
from ftapp.demo.policy import upload_only
from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import NotFoundError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.models.hub import inspect_hub_repo
from ftapp.resource_names import adapter_name_problem, description_problem
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from storage import AdapterRecord, Database, DuplicateError

ADAPTER_TYPES = ("project", "huggingface")


@dataclass(frozen=True)
class AddAdapterRequest:
    name: str = ""
    model_id: str = ""
    type: str = "project"
    location: str | None = None
    huggingface_name: str | None = None
    run_id: str | None = None
    prompt_id: str | None = None
    description: str = ""


def read_adapter_config(directory: Path) -> tuple[dict | None, Problem | None]:
    path = directory / "adapter_config.json"
    if not path.is_file():
        return None, Problem(
            rules.ADAPTER_LOCATION, f"{directory} has no adapter_config.json; point at the folder a PEFT save_pretrained wrote", "location"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, Problem(rules.ADAPTER_LOCATION, f"{path} is not readable JSON ({error})", "location")
    if not isinstance(config, dict):
        return None, Problem(rules.ADAPTER_LOCATION, f"{path} is not a JSON object", "location")
    return config, None


class AdapterService:
    def __init__(self, settings: Settings, db: Database, visitor: Visitor | None = None):
        self.settings, self.db, self.visitor = settings, visible_to(db, visitor), visitor
        self.token = HfToken(settings.secrets_dir)

    def add(self, request: AddAdapterRequest) -> AdapterRecord:
        if self.visitor:  # a demo visitor's adapters are the ones it trains
            raise ValidationError(upload_only("registering an adapter from a path or the Hub", "location"))
        problems: list[Problem] = []
        name = request.name.strip()
        if request.type not in ADAPTER_TYPES:
            problems.append(
                Problem(rules.ADAPTER_LOCATION, f"type must be one of {', '.join(ADAPTER_TYPES)} (got {request.type!r})", "type")
            )
        with self.db.transaction() as tx:
            if not name:
                problems.append(Problem(rules.ADAPTER_REGISTERED_NAME, "name is required", "name"))
            elif invalid := adapter_name_problem(rules.ADAPTER_REGISTERED_NAME, request.name, "name"):
                problems.append(invalid)  # the rule a training run's adapter_name follows (FT-002), on the name as given
            elif tx.adapters.find_one(name=name):
                problems.append(Problem(rules.ADAPTER_REGISTERED_NAME, f"an adapter named '{name}' already exists", "name"))
            if too_long := description_problem(rules.DESCRIPTION, request.description):
                problems.append(too_long)
            if not request.model_id:
                problems.append(
                    Problem(rules.ADAPTER_BASE_MODEL, "model_id is required: the base model this adapter was trained on", "model_id")
                )
            elif tx.models.get(request.model_id) is None:
                problems.append(Problem(rules.ADAPTER_BASE_MODEL, f"model '{request.model_id}' not found", "model_id"))
            if request.run_id and tx.runs.get(request.run_id) is None:
                problems.append(Problem(rules.ADAPTER_RUN, f"run '{request.run_id}' not found", "run_id"))
            if request.prompt_id and tx.prompts.get(request.prompt_id) is None:
                problems.append(Problem(rules.ADAPTER_PROMPT, f"prompt '{request.prompt_id}' not found", "prompt_id"))
        config: dict | None = None
        location = None
        if request.type == "project":
            outside = path_problem(self.settings, request.location, rules.ADAPTER_LOCATION, "location") if request.location else None
            if not request.location:
                problems.append(Problem(rules.ADAPTER_LOCATION, "location is required for a local adapter", "location"))
            elif outside:
                problems.append(outside)
            elif not Path(request.location).expanduser().is_dir():
                problems.append(Problem(rules.ADAPTER_LOCATION, f"{request.location} is not a directory", "location"))
            else:
                location = Path(request.location).expanduser().resolve()
                config, problem = read_adapter_config(location)
                if problem:
                    problems.append(problem)
        elif request.type == "huggingface" and not (request.huggingface_name or "").strip():
            problems.append(Problem(rules.ADAPTER_HUB_NAME, "huggingface_name is required for a Hub adapter", "huggingface_name"))
        if problems:
            raise ValidationError(problems)
        if request.type == "huggingface" and request.huggingface_name:  # a Hub adapter without one was refused above
            repo = inspect_hub_repo(
                request.huggingface_name, ("adapter_config.json",), rules.ADAPTER_HUB_NAME, self.token.value(), self.settings.offline
            )
            config = repo.files.get("adapter_config.json")
        config = config or {}
        try:
            with self.db.transaction() as tx:
                return tx.adapters.add(
                    id=new_id(),
                    name=name,
                    type=request.type,
                    model_id=request.model_id,
                    location=str(location) if location else None,
                    huggingface_name=(request.huggingface_name or "").strip() or None,
                    run_id=request.run_id or None,
                    prompt_id=request.prompt_id or None,
                    base_model_name=config.get("base_model_name_or_path"),
                    peft_type=config.get("peft_type"),
                    description=request.description,
                )
        except DuplicateError as error:
            raise ValidationError(Problem(rules.ADAPTER_REGISTERED_NAME, f"an adapter named '{name}' already exists", "name")) from error

    def list(self, model_id: str | None = None) -> list[AdapterRecord]:
        with self.db.transaction() as tx:
            return tx.adapters.find(model_id=model_id) if model_id else tx.adapters.list()

    def get(self, adapter_id: str) -> AdapterRecord:
        with self.db.transaction() as tx:
            return require_found(tx.adapters.get(adapter_id), "adapter", adapter_id)

    def remove(self, adapter_id: str) -> None:
        """Forget the adapter; its files stay where they are (they may be the user's own)."""
        with self.db.transaction() as tx:
            record = tx.adapters.get(adapter_id)
            if record is None:
                raise NotFoundError("adapter", adapter_id)
            require_own(self.visitor, record.owner, "adapter", record.name)
            tx.adapters.remove(adapter_id)
