"""A fine-tuning request and its validation (FT-001..FT-016), all problems reported together."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.demo import policy
from ftapp.errors import Problem
from ftapp.number_bounds import Bound, shown_value
from ftapp.prompts.config_schemas import check_config, defaults, stored_config_problems
from ftapp.prompts.configs import Preset
from ftapp.prompts.templates import check_templates, stored_template_problems
from ftapp.resource_names import ADAPTER_NAME_MAX, adapter_name_problem, is_adapter_name
from ftapp.rules import Rule
from ftapp.runs.axolotl_request import framework_problems
from ftapp.runs.devices import DeviceChoice, choose_devices
from ftapp.runs.machine import Machine
from ftapp.runs.method_request import method_problems
from ftapp.runs.strategy import strategy_problems
from ftapp.settings import Settings
from storage import Transaction
from trainer.protocol import AXOLOTL, RewardSpec

METHODS = ("sft", "dpo", "grpo")
ADAPTER_NAME_HINT = f"letters, digits and - (at most {ADAPTER_NAME_MAX}), e.g. support-intents-v1; a name no adapter has yet"
TRAINING_MODES = ("lora", "qlora", "full")
CONFIG_REFERENCES = {
    "training_arguments_config_id": "training_arguments",
    "lora_config_id": "lora_config",
    "bitsandbytes_config_id": "bitsandbytes_config",
    "generation_config_id": "generation_config",
}


@dataclass(frozen=True)
class FineTuneRequest:
    base_model_id: str
    dataset_id: str
    adapter_name: str
    prompt_id: str | None = None
    method: str = "sft"
    training_mode: str = "lora"
    gpus: str = "auto"
    num_processes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp2: how several GPUs share the model (ftapp.runs.strategy)
    cpu_threads: int | None = None
    output_dir: str | None = None
    num_epochs: float = 1.0
    learning_rate: float = 2e-4
    dataset_fraction: float = 1.0
    train_test_split: float = 0.9
    training_arguments_config_id: str | None = None
    lora_config_id: str | None = None
    bitsandbytes_config_id: str | None = None
    generation_config_id: str | None = None
    # Individual TrainingSettings fields set on top of the chosen config (CLI --set key=value).
    overrides: dict[str, Any] = field(default_factory=dict)
    # LoRA fields (r, lora_alpha, ...) set on top of the chosen LoRA config.
    lora_overrides: dict[str, Any] = field(default_factory=dict)
    # DPO/GRPO: DpoSettings/GrpoSettings fields (ftapp.prompts.config_schemas); defaults fill the rest.
    method_settings: dict[str, Any] = field(default_factory=dict)
    # GRPO: the weighted rewards, as RewardSpec or dicts of its fields.
    rewards: tuple[RewardSpec | dict[str, Any], ...] = ()
    # DPO/GRPO: a registered adapter on the same base model to keep training (e.g. an SFT run's).
    init_adapter_id: str | None = None
    # trl (ftapp's recipes) or axolotl: Axolotl trains the stored axolotl config, with ``overrides`` as its own keys.
    framework: str = "trl"
    axolotl_config_id: str | None = None


def preset_configs(preset: Preset, training_mode: str) -> dict[str, str | None]:
    """The config ids a request takes from a shipped preset: the training arguments, LoRA's unless the whole model
    trains, bitsandbytes' for QLoRA only (training uses no generation config). The Train tab and ``ftapp train
    --preset`` both build their requests with it, so the command the tab shows builds the request the tab does."""
    ids = {field: (preset.configs[kind].id if kind in preset.configs else None) for field, kind in CONFIG_REFERENCES.items()}
    ids["generation_config_id"] = None
    if training_mode == "full":
        ids["lora_config_id"] = None
    if training_mode != "qlora":
        ids["bitsandbytes_config_id"] = None
    return ids


def config_values(tx: Transaction, config_id: str | None, config_type: str) -> dict[str, Any]:
    """A referenced config's values on top of the type's defaults (the modern preset's values)."""
    values = defaults(config_type)
    record = tx.configs.get(config_id) if config_id else None
    if record is not None and record.type == config_type:
        values.update(record.values)
    return values


def training_values(tx: Transaction, request: FineTuneRequest) -> dict[str, Any]:
    """TrainingSettings as the run will use them: config, then the request's own fields, then --set."""
    values = config_values(tx, request.training_arguments_config_id, "training_arguments")
    values.update(num_train_epochs=request.num_epochs, learning_rate=request.learning_rate)
    values.update(request.overrides)
    return values


def lora_values(tx: Transaction, request: FineTuneRequest) -> dict[str, Any]:
    return {**config_values(tx, request.lora_config_id, "lora_config"), **request.lora_overrides}


def _local_problems(request: FineTuneRequest, machine: Machine) -> list[Problem]:
    problems: list[Problem] = []
    if request.method not in METHODS:
        problems.append(Problem(rules.METHOD, f"method must be one of {', '.join(METHODS)} (got {request.method!r})", "method"))
    if request.training_mode not in TRAINING_MODES:
        problems.append(
            Problem(
                rules.TRAINING_MODE,
                f"training_mode must be one of {', '.join(TRAINING_MODES)} (got {request.training_mode!r})",
                "training_mode",
            )
        )
    if not request.adapter_name:
        problems.append(Problem(rules.ADAPTER_NAME, f"name the adapter: {ADAPTER_NAME_HINT}", "adapter_name"))
    elif problem := adapter_name_problem(rules.ADAPTER_NAME, request.adapter_name, "adapter_name"):
        problems.append(problem)
    if request.output_dir is not None:
        out = Path(request.output_dir).expanduser()
        if not out.is_dir():
            problems.append(Problem(rules.OUTPUT_DIR, f"output_dir {out} does not exist as a directory", "output_dir"))
        elif not os.access(out, os.W_OK):
            problems.append(Problem(rules.OUTPUT_DIR, f"output_dir {out} is not writable", "output_dir"))
    if request.cpu_threads is not None:
        problems += _bounded(rules.CPU_THREADS, "cpu_threads", request.cpu_threads, Bound(1, machine.cpu_count, whole=True))
    problems += _bounded(rules.NUM_EPOCHS, "num_epochs", request.num_epochs, nb.EPOCHS)
    problems += _bounded(rules.LEARNING_RATE, "learning_rate", request.learning_rate, nb.LEARNING_RATE)
    problems += _bounded(rules.DATASET_FRACTION, "dataset_fraction", request.dataset_fraction, nb.FRACTION)
    problems += _bounded(rules.TRAIN_TEST_SPLIT, "train_test_split", request.train_test_split, nb.FRACTION)
    return problems


def _step_limit_problems(training: dict[str, Any]) -> list[Problem]:
    """max_steps 0 passes the field's range (-1 and up) but trains no step at all in transformers, while -1 runs the
    epochs: refused, so that one number means "run the epochs" in the form, the command line and the spec."""
    steps = training.get("max_steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps == 0:
        return [Problem(rules.CONFIG_FIELDS, "max_steps 0 would train no step: give -1 to run the epochs, or 1 or more", "max_steps")]
    return []


def _bounded(rule: Rule, field: str, value: Any, bound: Bound) -> list[Problem]:
    problem = bound.problem(rule, field, value)
    return [problem] if problem else []


def _device_problems(request: FineTuneRequest, machine: Machine) -> tuple[DeviceChoice | None, list[Problem]]:
    devices, problems = choose_devices(request.gpus, machine, rules.TRAIN_DEVICES)
    if devices is not None:
        limit = 1 if devices.kind == "cpu" else len(devices.gpu_ids)
        if not Bound(1, limit, whole=True).allows(request.num_processes):
            problems.append(
                Problem(
                    rules.NUM_PROCESSES,
                    f"num_processes must be a whole number from 1 to {limit} for devices '{devices.label}' "
                    f"(got {shown_value(request.num_processes)})",
                    "num_processes",
                )
            )
        if request.training_mode == "qlora" and devices.kind == "cpu":
            problems.append(
                Problem(rules.QLORA_NEEDS_CUDA, "QLoRA needs a CUDA GPU (bitsandbytes 4-bit); choose LoRA on CPU", "training_mode")
            )
    return devices, problems


def validate_fine_tune(tx: Transaction, request: FineTuneRequest, machine: Machine, settings: Settings | None = None) -> list[Problem]:
    """Every problem of the request; ``settings`` says whether custom reward code may run (FT-018)."""
    problems = _local_problems(request, machine)
    _devices, device_problems = _device_problems(request, machine)
    problems += device_problems + strategy_problems(request.strategy, request.method, _devices, request.num_processes)
    if is_adapter_name(request.adapter_name) and tx.adapters.find_one(name=request.adapter_name):
        problems.append(Problem(rules.ADAPTER_NAME, f"an adapter named '{request.adapter_name}' already exists", "adapter_name"))
    model = tx.models.get(request.base_model_id or "")
    if not request.base_model_id:
        problems.append(Problem(rules.TRAIN_BASE_MODEL, "choose a base model to train", "base_model_id"))
    elif model is None:
        problems.append(Problem(rules.TRAIN_BASE_MODEL, f"model '{request.base_model_id}' not found", "base_model_id"))
    elif model.gated and model.license_accepted_at is None:
        # seed 002: a gated model's licence is accepted explicitly before its first use.
        problems.append(
            Problem(
                rules.TRAIN_BASE_MODEL,
                f"model '{model.name}' is gated ({model.license or 'licence on the Hub'}); accept its licence first",
                "base_model_id",
            )
        )
    dataset = tx.datasets.get(request.dataset_id or "")
    if not request.dataset_id:
        problems.append(Problem(rules.TRAIN_DATASET, "choose a dataset to train on", "dataset_id"))
    elif dataset is None:
        problems.append(Problem(rules.TRAIN_DATASET, f"dataset '{request.dataset_id}' not found", "dataset_id"))
    prompt = None
    if request.prompt_id:
        prompt = tx.prompts.get(request.prompt_id)
        if prompt is None:
            problems.append(Problem(rules.TRAIN_PROMPT, f"prompt '{request.prompt_id}' not found", "prompt_id"))
        elif syntax := stored_template_problems(prompt):
            problems += syntax  # PR-007: stored by an import or a direct write; never rendered
        elif dataset is not None:
            templates = {
                "prompt_template": prompt.prompt_template,
                "input_template": prompt.input_template,
                "completion_template": prompt.completion_template,
            }
            for problem in check_templates(templates, dataset.columns):
                problems.append(
                    Problem(
                        rules.TRAIN_PROMPT_FITS,
                        f"prompt '{prompt.name}' does not fit dataset '{dataset.name}': {problem.message}",
                        "prompt_id",
                    )
                )
    elif dataset is not None and dataset.format == "plain" and request.method == "sft" and request.framework != AXOLOTL:
        problems.append(
            Problem(
                rules.TRAIN_PROMPT_REQUIRED,
                f"dataset '{dataset.name}' has plain columns ({', '.join(dataset.columns)}); choose a prompt that maps them to text",
                "prompt_id",
            )
        )
    for name, config_type in CONFIG_REFERENCES.items():
        config_id = getattr(request, name)
        if config_id:
            record = tx.configs.get(config_id)
            if record is None:
                problems.append(Problem(rules.TRAIN_CONFIGS, f"{name} '{config_id}' not found", name))
            elif record.type != config_type:
                problems.append(Problem(rules.TRAIN_CONFIGS, f"{name} '{config_id}' is a {record.type} config, not {config_type}", name))
            else:  # checked when it was saved, but an import or an older version may have stored other numbers
                problems += stored_config_problems(record, config_type, name)
    if request.framework != AXOLOTL:  # an Axolotl run's overrides are keys of its YAML: framework_problems checks them
        problems += check_config("training_arguments", request.overrides)
        problems += _step_limit_problems(training_values(tx, request))
    problems += check_config("lora_config", request.lora_overrides)
    if request.training_mode == "qlora" and not request.bitsandbytes_config_id and request.framework != AXOLOTL:
        problems.append(
            Problem(rules.QLORA_NEEDS_CUDA, "QLoRA needs a bitsandbytes_config_id (the presets ship one)", "bitsandbytes_config_id")
        )
    problems += framework_problems(tx, request, dataset, prompt, _devices)
    problems += method_problems(tx, request, model, dataset, prompt, training_values(tx, request), settings)
    # FT-006 (memory) needs the preflight estimate: RunService.check adds it once these pass.
    return problems


def cap_problems(tx: Transaction, request: FineTuneRequest, caps: policy.DemoCaps) -> list[Problem]:
    """A public demo visitor's request over the caps (DM-001 rows, DM-002 steps, DM-005 device and model, DM-006
    server paths). Kept apart from ``validate_fine_tune``: a request that breaks only these still gets its preflight
    estimate, with these problems under it."""
    problems: list[Problem] = []
    if request.output_dir is not None:
        problems.append(policy.upload_only("an output_dir on the server", "output_dir"))
    if request.framework == AXOLOTL:
        problems.append(policy.host_only("training with Axolotl (it runs a YAML config as it says)", "framework"))
    if request.training_mode == "full":
        problems.append(
            Problem(
                rules.DEMO_MODEL_AND_DEVICE,
                "the demo trains LoRA adapters (a full fine-tune would register a model every visitor sees)",
                "training_mode",
            )
        )
    model = tx.models.get(request.base_model_id or "")
    if model is not None:
        problems += policy.device_problems(caps, request.gpus, request.num_processes, model.num_parameters, model.name)
    dataset = tx.datasets.get(request.dataset_id or "")
    if dataset is not None:
        rows = None if dataset.num_rows is None else int(dataset.num_rows * request.dataset_fraction)
        too_many = policy.rows_problem(caps, rows, "dataset_id", "training run")
        if too_many:
            problems.append(too_many)
        else:
            train_rows = int((rows or 0) * request.train_test_split)
            steps = policy.steps_problem(caps, policy.training_steps(training_values(tx, request), train_rows, request.num_epochs))
            problems += [steps] if steps else []
    return problems
