"""An evaluation request (N model/adapter combinations on one dataset) and EV-001..EV-008."""

from __future__ import annotations

from dataclasses import dataclass, field

from ftapp.device_choice import choose_devices
from ftapp.errors import Problem
from ftapp.machine import Machine
from storage import Transaction


@dataclass(frozen=True)
class Combination:
    model_id: str
    adapter_id: str | None = None  # None or "": the base model alone


@dataclass(frozen=True)
class EvaluationRequest:
    dataset_id: str
    prompt_id: str
    combinations: tuple[Combination, ...] = field(default_factory=tuple)
    gpus: str = "auto"
    generation_config_id: str | None = None
    dataset_fraction: float = 1.0


def validate_evaluation(tx: Transaction, request: EvaluationRequest, machine: Machine) -> list[Problem]:
    problems: list[Problem] = []
    if not request.combinations:
        problems.append(Problem("EV-001", "give at least one model[:adapter] combination to evaluate", "combinations"))
    if not request.dataset_id:
        problems.append(Problem("EV-002", "dataset_id is required", "dataset_id"))
    elif tx.datasets.get(request.dataset_id) is None:
        problems.append(Problem("EV-007", f"dataset '{request.dataset_id}' not found", "dataset_id"))
    if not request.prompt_id:
        problems.append(Problem("EV-003", "prompt_id is required", "prompt_id"))
    elif tx.prompts.get(request.prompt_id) is None:
        problems.append(Problem("EV-008", f"prompt '{request.prompt_id}' not found", "prompt_id"))
    problems += choose_devices(request.gpus, machine, "EV-004")[1]
    for number, combo in enumerate(request.combinations, start=1):
        model = tx.models.get(combo.model_id or "")
        if model is None:
            problems.append(Problem("EV-005", f"combination {number}: model '{combo.model_id}' not found", "combinations"))
        if not combo.adapter_id:
            continue
        adapter = tx.adapters.get(combo.adapter_id)
        if adapter is None:
            problems.append(Problem("EV-006", f"combination {number}: adapter '{combo.adapter_id}' not found", "combinations"))
        elif model is not None and adapter.model_id != model.id:
            base = tx.models.get(adapter.model_id)
            problems.append(Problem(
                "EV-006",
                f"combination {number}: adapter '{adapter.name}' was trained on '{base.name if base else adapter.model_id}', not '{model.name}'",
                "combinations",
            ))
    return problems
