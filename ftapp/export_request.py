"""An export request (merge, archive, registry, Hub push, serve) and EX-001..EX-005."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ftapp.errors import Problem
from ftapp.hub_models import hub_offline
from storage import Transaction

# MLflow registry / Hub repo names; seed 002 names model groups with the same alphabet.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LOADABLE_MODEL_TYPES = ("huggingface", "project", "model_registry")


@dataclass(frozen=True)
class ExportRequest:
    base_model_id: str
    adapter_id: str
    model_name: str


def validate_export(tx: Transaction, request: ExportRequest) -> list[Problem]:
    problems: list[Problem] = []
    model = None
    if not request.base_model_id:
        problems.append(Problem("EX-001", "base_model_id is required", "base_model_id"))
    else:
        model = tx.models.get(request.base_model_id)
        if model is None:
            problems.append(Problem("EX-001", f"model '{request.base_model_id}' not found", "base_model_id"))
    if not request.adapter_id:
        problems.append(Problem("EX-002", "adapter_id is required", "adapter_id"))
    else:
        adapter = tx.adapters.get(request.adapter_id)
        if adapter is None:
            problems.append(Problem("EX-002", f"adapter '{request.adapter_id}' not found", "adapter_id"))
        elif adapter.type != "project" or not adapter.location:
            problems.append(Problem("EX-004", f"adapter '{adapter.name}' has no local files ({adapter.type}); download it and register the folder first", "adapter_id"))
        elif model is not None and adapter.model_id != model.id:
            problems.append(Problem("EX-002", f"adapter '{adapter.name}' was not trained on model '{model.name}'", "adapter_id"))
    if not (request.model_name or "").strip():
        problems.append(Problem("EX-003", "model_name is required", "model_name"))
    elif not MODEL_NAME.match(request.model_name):
        problems.append(Problem("EX-003", f"model_name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (got {request.model_name!r})", "model_name"))
    if model is not None:
        reason = _unloadable_reason(model.type, model.location, model.huggingface_name)
        if reason:
            problems.append(Problem("EX-005", f"model '{model.name}': {reason}", "base_model_id"))
    return problems


def _unloadable_reason(model_type: str, location: str | None, hub_name: str | None) -> str | None:
    """Why the merge could not load this base model's weights, or None when it can."""
    if model_type not in LOADABLE_MODEL_TYPES:
        return f"type {model_type} cannot be loaded for a merge"
    if location:
        return None if (Path(location) / "config.json").is_file() else f"its directory {location} is gone or has no config.json"
    from huggingface_hub import try_to_load_from_cache

    if hub_offline() and not isinstance(try_to_load_from_cache(hub_name or "", "config.json"), str):
        return f"'{hub_name}' is not in the local Hub cache and the Hub cannot be reached (offline)"
    return None
