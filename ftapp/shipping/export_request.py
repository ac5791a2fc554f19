"""An export request (merge, archive, MLflow registry, Hub push, GGUF) and its rules EX-001..EX-009, EX-012, EX-013.

What is exported is an adapter (``adapter_id``, or the adapter a training run ``run_id`` produced),
or, without an adapter, a model with local files (a merged model, a full fine-tune). The base
model is named too: it is merged into, or referenced by the card and the registry entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from ftapp import rules
from ftapp.demo import policy
from ftapp.errors import Problem
from ftapp.models.hub import hub_offline
from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs.devices import choose_devices
from ftapp.runs.machine import Machine
from ftapp.shipping.gguf_request import GgufTools, gguf_problems
from storage import AdapterRecord, ModelRecord, Transaction
from trainer.protocol import EXPORT_ACTIONS

# MLflow registry / Hub repo names; seed 002 names model groups with the same alphabet.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HUB_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LOADABLE_MODEL_TYPES = ("huggingface", "project", "model_registry")
FINETUNE = RunKind.FINETUNE
COMPUTING_ACTIONS = ("merge", "gguf")  # they load the weights, on the devices asked for


@dataclass(frozen=True)
class ExportRequest:
    base_model_id: str
    adapter_id: str
    model_name: str  # merge: the merged model's name; register: the registered model; archive: the file name
    action: str = "merge"  # one of EXPORT_ACTIONS
    run_id: str = ""  # a training run: export the adapter it produced
    repo_id: str = ""  # push: "name" or "owner/name"
    private: bool = True  # push: a new Hub repo is private unless this is False
    gpus: str = "auto"  # merge, gguf: where base + adapter load ("cpu", "auto" or GPU ids)
    gguf_types: tuple[str, ...] = ("f16",)  # gguf: the GGUF types to write, each verified (EX-012)


def with_defaults(tx: Transaction, request: ExportRequest) -> ExportRequest:
    """Fill what can be inferred: the run's adapter, the adapter's base model, a name from the adapter or model."""
    adapter_id = request.adapter_id
    if request.run_id and not adapter_id:
        produced = tx.adapters.find(run_id=request.run_id)
        adapter_id = produced[0].id if produced else ""
    adapter = tx.adapters.get(adapter_id) if adapter_id else None
    base_model_id = request.base_model_id or (adapter.model_id if adapter else "")
    model = tx.models.get(base_model_id) if base_model_id else None
    default_name = (adapter.name + ("-merged" if request.action == "merge" else "")) if adapter else (model.name if model else "")
    name = request.model_name.strip() or default_name
    return replace(request, adapter_id=adapter_id, base_model_id=base_model_id, model_name=name, repo_id=request.repo_id.strip())


def validate_export(
    tx: Transaction,
    request: ExportRequest,
    machine: Machine | None = None,
    has_token: bool = False,
    offline: bool = False,
    caps: policy.DemoCaps | None = None,
    gguf_tools: GgufTools | None = None,
) -> list[Problem]:
    """Every problem of the request; ``machine`` checks a merge's (or GGUF export's) devices; ``has_token`` and
    ``offline`` a push; ``caps``: a public demo visitor's request, who downloads archives only (DM-007);
    ``gguf_tools``: what a GGUF export needs installed (EX-013)."""
    problems: list[Problem] = []
    if request.action not in EXPORT_ACTIONS:
        problems.append(
            Problem(rules.EXPORT_ACTION, f"action must be one of {', '.join(EXPORT_ACTIONS)} (got {request.action!r})", "action")
        )
    problems += _run_problems(tx, request.run_id)
    model = resolve_model(tx, request.base_model_id, request.action in COMPUTING_ACTIONS, problems)
    adapter = resolve_adapter(tx, request.adapter_id, model, problems) if request.adapter_id else None
    if request.action == "merge" and not request.adapter_id:
        problems.append(Problem(rules.EXPORT_ADAPTER, "adapter_id is required: a merge needs a LoRA adapter", "adapter_id"))
    problems += _name_problems(tx, request)
    if request.action == "push":
        problems += _push_problems(request, has_token, offline or hub_offline())
    if request.action == "gguf" and gguf_tools is not None:
        problems += gguf_problems(tuple(request.gguf_types), gguf_tools)
    if request.action in COMPUTING_ACTIONS and machine is not None:
        problems += choose_devices(request.gpus, machine, rules.EXPORT_DEVICES)[1]
    if model is not None and adapter is None and not request.adapter_id and request.action != "merge" and not model.location:
        problems.append(
            Problem(
                rules.EXPORT_MODEL_WEIGHTS,
                f"model '{model.name}' has no local files to export ({model.type}); export an adapter, or a merged or fine-tuned model",
                "base_model_id",
            )
        )
    if caps and request.action == "push":
        problems.append(policy.host_only("pushing to the Hugging Face Hub with the host's token", "action"))
    elif caps and request.action not in policy.DEMO_EXPORT_ACTIONS:
        problems.append(policy.host_only(f"export action {request.action!r} (download an archive instead)", "action"))
    return problems


def _run_problems(tx: Transaction, run_id: str, field: str = "run_id", what: str = "") -> list[Problem]:
    if not run_id:
        return []
    run = tx.runs.get(run_id)
    if run is None:
        return [Problem(rules.EXPORT_RUN_SUCCEEDED, f"{what}run '{run_id}' not found", field)]
    if run.kind != FINETUNE:
        return [Problem(rules.EXPORT_RUN_SUCCEEDED, f"{what}run '{run_id}' is a {run.kind} run, not a training run", field)]
    if run.status != RunStatus.SUCCEEDED:
        return [
            Problem(
                rules.EXPORT_RUN_SUCCEEDED,
                f"{what}run '{run_id}' is {run.status}: only the result of a succeeded training run can be exported",
                field,
            )
        ]
    if field == "run_id" and not tx.adapters.find(run_id=run_id):
        return [
            Problem(
                rules.EXPORT_RUN_SUCCEEDED,
                f"run '{run_id}' registered no adapter (a full fine-tune registers a model: export that model instead)",
                field,
            )
        ]
    return []


def resolve_model(tx: Transaction, model_id: str, needs_weights: bool, problems: list[Problem]) -> ModelRecord | None:
    """The model (EX-001) if usable (EX-005); ``needs_weights``: it will be loaded, not only named."""
    if not model_id:
        problems.append(Problem(rules.EXPORT_BASE_MODEL, "base_model_id is required", "base_model_id"))
        return None
    model = tx.models.get(model_id)
    if model is None:
        problems.append(Problem(rules.EXPORT_BASE_MODEL, f"model '{model_id}' not found", "base_model_id"))
        return None
    reason = _unloadable_reason(model, needs_weights)
    if reason:
        problems.append(Problem(rules.EXPORT_MODEL_WEIGHTS, f"model '{model.name}': {reason}", "base_model_id"))
    return model


def resolve_adapter(tx: Transaction, adapter_id: str, model: ModelRecord | None, problems: list[Problem]) -> AdapterRecord | None:
    """The adapter (EX-002) with local files (EX-004), trained on ``model`` by a run that succeeded (EX-006)."""
    adapter = tx.adapters.get(adapter_id)
    if adapter is None:
        problems.append(Problem(rules.EXPORT_ADAPTER, f"adapter '{adapter_id}' not found", "adapter_id"))
    elif adapter.type != "project" or not adapter.location:
        problems.append(
            Problem(
                rules.EXPORT_ADAPTER_FILES,
                f"adapter '{adapter.name}' has no local files ({adapter.type}); download it and register the folder first",
                "adapter_id",
            )
        )
    elif not (Path(adapter.location) / "adapter_config.json").is_file():
        problems.append(
            Problem(
                rules.EXPORT_ADAPTER_FILES,
                f"adapter '{adapter.name}': {adapter.location} is gone or has no adapter_config.json",
                "adapter_id",
            )
        )
    elif model is not None and adapter.model_id != model.id:
        problems.append(Problem(rules.EXPORT_ADAPTER, f"adapter '{adapter.name}' was not trained on model '{model.name}'", "adapter_id"))
    if adapter is not None and adapter.run_id:
        problems += _run_problems(tx, adapter.run_id, "adapter_id", f"adapter '{adapter.name}': its training ")
    return adapter


def _name_problems(tx: Transaction, request: ExportRequest) -> list[Problem]:
    if not (request.model_name or "").strip():
        return [Problem(rules.EXPORT_MODEL_NAME, "model_name is required", "model_name")]
    if not MODEL_NAME.match(request.model_name):
        return [
            Problem(
                rules.EXPORT_MODEL_NAME,
                f"model_name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (got {request.model_name!r})",
                "model_name",
            )
        ]
    if request.action == "merge" and tx.models.find_one(name=request.model_name):
        return [
            Problem(
                rules.EXPORT_MODEL_NAME,
                f"a model named '{request.model_name}' already exists; the merged model is registered under this name",
                "model_name",
            )
        ]
    return []


def _push_problems(request: ExportRequest, has_token: bool, offline: bool) -> list[Problem]:
    problems = []
    if not HUB_REPO_ID.match(request.repo_id or ""):
        problems.append(
            Problem(rules.PUSH_REPO, f"repo_id must be a Hub repo id 'name' or 'owner/name' (got {request.repo_id!r})", "repo_id")
        )
    if not has_token:
        problems.append(
            Problem(rules.PUSH_REPO, "pushing needs a Hugging Face token with write access: set one in Settings (or HF_TOKEN)", "repo_id")
        )
    if offline:
        problems.append(
            Problem(rules.PUSH_REPO, "the Hub cannot be reached: the app is offline (HF_HUB_OFFLINE), so nothing can be pushed", "repo_id")
        )
    return problems


def _unloadable_reason(model: ModelRecord, needs_weights: bool) -> str | None:
    """Why the export could not use this base model, or None when it can."""
    if model.type not in LOADABLE_MODEL_TYPES:
        return f"type {model.type} cannot be loaded for a merge"
    if model.location:
        return None if (Path(model.location) / "config.json").is_file() else f"its directory {model.location} is gone or has no config.json"
    if not needs_weights:
        return None  # an adapter's card and registry entry only name a Hub base
    from huggingface_hub import try_to_load_from_cache

    if hub_offline() and not isinstance(try_to_load_from_cache(model.huggingface_name or "", "config.json"), str):
        return f"'{model.huggingface_name}' is not in the local Hub cache and the Hub cannot be reached (offline)"
    return None
