"""``TrainSpec.method_settings`` of DPO and GRPO runs: the keys each method takes, checked and turned into
``DPOConfig`` / ``GRPOConfig`` keyword arguments. Standard library only: ``check_spec`` runs it before the
ML imports, and the rules are unit-tested without torch.

Everything else a run needs (learning rate, steps, batch size, precision, max_length for DPO) comes
from ``TrainSpec.training`` through ``trainer.training_arguments.resolve_training``, as for SFT; its
SFT-only parts (padding-free packing, completion/assistant-only loss) are turned off here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainer.protocol import DPO_LOSS_TYPES

# Reward kinds that compare with the row's reference answer, so the data must have one.
REFERENCE_REWARDS = frozenset({"exact_match", "numeric_match"})


@dataclass(frozen=True)
class Setting:
    default: Any
    kind: type  # float or int (str for choices)
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    above_minimum: bool = False  # the minimum itself is not allowed


DPO_SETTINGS: dict[str, Setting] = {
    "beta": Setting(
        0.1,
        float,
        "How far the model may move from the reference (the base model, or the adapter the run starts from): higher stays closer.",
        minimum=0.0,
        above_minimum=True,
    ),
    "loss_type": Setting(
        "sigmoid", str, "The preference loss: sigmoid is the DPO paper's; ipo, hinge, robust... are TRL's variants.", choices=DPO_LOSS_TYPES
    ),
}
GRPO_SETTINGS: dict[str, Setting] = {
    "num_generations": Setting(
        4,
        int,
        "Completions sampled per prompt; rewards are compared within each group. "
        "per_device_train_batch_size × gradient_accumulation_steps counts completions "
        "and must be a multiple of it.",
        minimum=2,
    ),
    "max_completion_length": Setting(64, int, "Longest completion sampled, in tokens.", minimum=1),
    "temperature": Setting(1.0, float, "Sampling temperature of the completions.", minimum=0.0, above_minimum=True),
    "beta": Setting(
        0.0,
        float,
        "KL coefficient against the reference model (the base, or the adapter the run starts "
        "from). 0 skips the reference pass: faster, and no KL is reported.",
        minimum=0.0,
    ),
}
METHOD_SETTINGS = {"dpo": DPO_SETTINGS, "grpo": GRPO_SETTINGS}


def resolved_settings(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting of ``method`` with the defaults filled in; a ValueError names each bad key."""
    known = METHOD_SETTINGS[method]
    problems = [f"unknown setting {key!r} (known: {', '.join(known)})" for key in sorted(set(settings) - set(known))]
    values = {}
    for key, setting in known.items():
        value = settings.get(key, setting.default)
        problem = _problem(value, setting)
        if problem:
            problems.append(f"{key} {problem}")
        values[key] = value
    if problems:
        raise ValueError(f"spec.method_settings for {method}: " + "; ".join(problems))
    return values


def dpo_arguments(settings: dict[str, Any]) -> dict[str, Any]:
    values = resolved_settings("dpo", settings)
    return {"beta": float(values["beta"]), "loss_type": [values["loss_type"]]}


def grpo_arguments(settings: dict[str, Any], *, eval_batch_size: int | None, notes: list[str]) -> dict[str, Any]:
    values = resolved_settings("grpo", settings)
    arguments = {
        "num_generations": int(values["num_generations"]),
        "max_completion_length": int(values["max_completion_length"]),
        "temperature": float(values["temperature"]),
        "beta": float(values["beta"]),
    }
    if eval_batch_size is not None and eval_batch_size % arguments["num_generations"]:
        # An evaluation batch holds whole groups too; round it up rather than fail a run over it.
        whole = -(-eval_batch_size // arguments["num_generations"]) * arguments["num_generations"]
        arguments["per_device_eval_batch_size"] = whole
        notes.append(
            f"per_device_eval_batch_size raised from {eval_batch_size} to {whole}: "
            f"a multiple of num_generations ({arguments['num_generations']})"
        )
    return arguments


def grpo_batch_problem(training: dict[str, Any], settings: dict[str, Any], num_processes: int) -> str | None:
    """Why the batch cannot hold whole groups of completions, or None."""
    generations = int(settings.get("num_generations", GRPO_SETTINGS["num_generations"].default))
    rows = int(training.get("per_device_train_batch_size") or 8)
    accumulation = int(training.get("gradient_accumulation_steps") or 1)
    if generations >= 2 and (rows * accumulation * num_processes) % generations:
        return (
            f"per_device_train_batch_size × gradient_accumulation_steps × processes ({rows} × {accumulation} × "
            f"{num_processes}) must be a multiple of num_generations ({generations}): GRPO batches count "
            "completions, and each prompt's completions must share a batch"
        )
    return None


def preference_training(training: dict[str, Any], method: str, notes: list[str]) -> dict[str, Any]:
    """``training`` without the SFT-only batching, which DPO and GRPO cannot use."""
    adjusted = dict(training)
    for key in ("padding_free", "packing"):
        if adjusted.get(key):
            notes.append(f"{key} off: it is SFT-only; {method.upper()} trains padded batches")
        adjusted[key] = False
    return adjusted


def _problem(value: Any, setting: Setting) -> str | None:
    if setting.choices:
        return None if value in setting.choices else f"must be one of {', '.join(setting.choices)} (got {value!r})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number (got {value!r})"
    if setting.kind is int and value != int(value):
        return f"must be a whole number (got {value!r})"
    if not math.isfinite(value):
        return f"must be finite (got {value!r})"
    if setting.minimum is not None and (value < setting.minimum or (setting.above_minimum and value == setting.minimum)):
        return f"must be {'above' if setting.above_minimum else 'at least'} {setting.minimum:g} (got {value!r})"
    return None
