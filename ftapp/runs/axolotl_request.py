"""The framework of a fine-tuning request: ftapp's own TRL recipes, or Axolotl training a stored YAML (seed 001).

An Axolotl run names a stored ``axolotl`` config (FT-012a, FT-016) whose YAML decides the hyper-parameters; the run
decides the model, the one dataset and the folders (``trainer.protocol.axolotl_run_config``). The config is read again
as hostile text (CF-003, CF-003a), the request's ``overrides`` (``--set key=value``) are set on top of it and checked
the same way, and Axolotl must be installed where the trainer can run it (FT-001c): it is never replaced by the TRL
recipe. Given no prompt, the run gets one generated from the config's dataset type (``ftapp.prompts.axolotl_prompts``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ftapp import rules
from ftapp.errors import Problem
from ftapp.prompts.axolotl_prompts import create_prompt, plan_prompt
from ftapp.prompts.axolotl_yaml import stored_axolotl_values
from ftapp.prompts.config_schemas import check_config, defaults
from ftapp.runs.devices import DeviceChoice
from storage import DatasetRecord, PromptRecord, Transaction
from trainer.protocol import (
    AXOLOTL,
    AXOLOTL_INSTALL,
    AXOLOTL_PYTHON_ENV,
    FRAMEWORKS,
    TrainSpec,
    axolotl_config_problems,
    axolotl_python,
    axolotl_training_mode,
)

if TYPE_CHECKING:  # its module imports this one
    from ftapp.runs.fine_tune_request import FineTuneRequest

FIELD = "axolotl_config_id"
# Axolotl's names of the settings the preflight estimate reads, as ftapp's TrainingSettings names them.
ESTIMATED_SETTINGS = {
    "num_epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "micro_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "sequence_len": "max_length",
}


def axolotl_values(tx: Transaction, config_id: str | None, overrides: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The stored config with ``overrides`` set on top, or None and why it cannot run (FT-012a, FT-016, CF-003/003a)."""
    if not config_id:
        return None, [
            Problem(rules.AXOLOTL_CONFIG_REQUIRED, "framework axolotl trains a stored axolotl config: give axolotl_config_id", FIELD)
        ]
    record = tx.configs.get(config_id)
    if record is None:
        return None, [Problem(rules.TRAIN_CONFIGS, f"{FIELD} '{config_id}' not found", FIELD)]
    if record.type != AXOLOTL:
        return None, [Problem(rules.TRAIN_CONFIGS, f"{FIELD} '{config_id}' is a {record.type} config, not axolotl", FIELD)]
    values, problems = stored_axolotl_values(record, FIELD)
    if values is None:
        return None, problems
    values = {**values, **overrides}
    problems = [
        Problem(rules.AXOLOTL_CONFIG_SAFE, f"{where} {why} (with the overrides set)", where)
        for where, why in axolotl_config_problems(values)
    ]
    problems += [Problem(p.rule, f"{FIELD}: {p.message}", p.field) for p in check_config(AXOLOTL, values)]  # CF-005: no secrets
    return (None, problems) if problems else (values, [])


def framework_problems(
    tx: Transaction,
    request: FineTuneRequest,
    dataset: DatasetRecord | None,
    prompt: PromptRecord | None,
    devices: DeviceChoice | None,
    environ: Mapping[str, str] | None = None,
) -> list[Problem]:
    """FT-001b, and for an Axolotl run everything Axolotl needs that the TRL checks do not cover."""
    if request.framework not in FRAMEWORKS:
        return [Problem(rules.FRAMEWORK, f"framework must be one of {', '.join(FRAMEWORKS)} (got {request.framework!r})", "framework")]
    if request.framework != AXOLOTL:
        if request.axolotl_config_id:
            return [Problem(rules.AXOLOTL_CONFIG_REQUIRED, f"{FIELD} is for framework axolotl; this run uses {request.framework}", FIELD)]
        return []
    values, problems = axolotl_values(tx, request.axolotl_config_id, request.overrides)
    if request.method != "sft":
        problems.append(
            Problem(
                rules.AXOLOTL_CONFIG_REQUIRED, f"an Axolotl run trains SFT (got method {request.method}); DPO and GRPO use trl", "method"
            )
        )
    if request.num_processes != 1:
        problems.append(Problem(rules.NUM_PROCESSES, "an Axolotl run is one process; choose one GPU, the CPU or auto", "num_processes"))
    if values is not None and devices is not None and devices.kind == "cpu" and axolotl_training_mode(values) == "qlora":
        problems.append(
            Problem(
                rules.QLORA_NEEDS_CUDA, "the Axolotl config loads a quantized base (qlora, load_in_4bit/8bit): it needs a CUDA GPU", FIELD
            )
        )
    if values is not None and dataset is not None and prompt is None:
        problems += plan_prompt(tx, values, dataset)[1]
    if axolotl_python(os.environ if environ is None else environ) is None:
        problems.append(
            Problem(
                rules.AXOLOTL_INSTALLED,
                f"Axolotl is not installed for ftapp's trainer (not in this Python, and {AXOLOTL_PYTHON_ENV} names none that has it). "
                f"{AXOLOTL_INSTALL}",
                "framework",
            )
        )
    return problems


def with_generated_prompt(tx: Transaction, request: FineTuneRequest) -> tuple[FineTuneRequest, str | None]:
    """An Axolotl request given no prompt, with the one its dataset type generates (an identical prompt of the dataset
    is reused); and the id of the prompt this call stored, None when it stored none. A validated request."""
    if request.framework != AXOLOTL or request.prompt_id:
        return request, None
    values, _ = axolotl_values(tx, request.axolotl_config_id, request.overrides)
    dataset = tx.datasets.get(request.dataset_id)
    plan = plan_prompt(tx, values, dataset)[0] if values is not None and dataset is not None else None
    if plan is None:
        return request, None
    prompt, created = create_prompt(tx, plan)
    return replace(request, prompt_id=prompt.id), prompt.id if created else None


def preflight_inputs(tx: Transaction, request: FineTuneRequest) -> tuple[dict[str, Any], str, int] | None:
    """An Axolotl run's training settings, training mode and LoRA rank for the estimate; None for a TRL run."""
    if request.framework != AXOLOTL:
        return None
    values, _ = axolotl_values(tx, request.axolotl_config_id, request.overrides)
    if values is None:
        return None
    rank = values.get("lora_r")
    return estimated_training(values), axolotl_training_mode(values), rank if isinstance(rank, int) and rank > 0 else 16


def estimated_training(values: Mapping[str, Any]) -> dict[str, Any]:
    """TrainingSettings for the preflight estimate: Axolotl's numbers where they are usable, the defaults elsewhere."""
    training = defaults("training_arguments")
    for axolotl_key, key in ESTIMATED_SETTINGS.items():
        value = values.get(axolotl_key)
        if value is not None and not check_config("training_arguments", {key: value}):
            training[key] = value
    training["padding_free"] = False  # Axolotl pads unless sample_packing packs rows
    training["gradient_checkpointing"] = "true" if values.get("gradient_checkpointing") else "false"
    return training


def axolotl_spec(tx: Transaction, request: FineTuneRequest, spec: TrainSpec) -> TrainSpec:
    """The spec of an Axolotl run: the config, and what ftapp shows and estimates from it (a validated request)."""
    values, _ = axolotl_values(tx, request.axolotl_config_id, request.overrides)
    assert values is not None, "validate the request first"
    return replace(
        spec,
        framework=AXOLOTL,
        axolotl_config=values,
        training_mode=axolotl_training_mode(values),
        training=estimated_training(values),
        lora={},
        bitsandbytes=None,
        method_settings={},
        rewards=(),
        init_adapter=None,
    )
