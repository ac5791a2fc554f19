"""A fine-tuning request and its validation (FT-001..FT-016), all problems reported together."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ftapp.config_schemas import TrainingArguments, resolve
from ftapp.device_choice import DeviceChoice, choose_devices
from ftapp.errors import Problem
from ftapp.machine import Machine
from ftapp.memory_estimate import estimate_training_memory
from ftapp.model_configs import read_local_model_config
from ftapp.prompt_templates import check_templates
from storage import Transaction

ADAPTER_NAME = re.compile(r"^[a-zA-Z0-9-]+$")
METHODS = ("sft", "dpo", "grpo")
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


def _local_problems(request: FineTuneRequest, machine: Machine) -> list[Problem]:
    problems: list[Problem] = []
    if request.method not in METHODS:
        problems.append(Problem("FT-001", f"method must be one of {', '.join(METHODS)} (got {request.method!r})", "method"))
    if request.training_mode not in TRAINING_MODES:
        problems.append(Problem("FT-001", f"training_mode must be one of {', '.join(TRAINING_MODES)} (got {request.training_mode!r})", "training_mode"))
    if not ADAPTER_NAME.match(request.adapter_name or ""):
        problems.append(Problem("FT-002", f"adapter_name must match ^[a-zA-Z0-9-]+$ (got {request.adapter_name!r})", "adapter_name"))
    if request.output_dir is not None:
        out = Path(request.output_dir).expanduser()
        if not out.is_dir():
            problems.append(Problem("FT-003", f"output_dir {out} does not exist as a directory", "output_dir"))
        elif not os.access(out, os.W_OK):
            problems.append(Problem("FT-003", f"output_dir {out} is not writable", "output_dir"))
    if request.cpu_threads is not None and not 1 <= request.cpu_threads <= machine.cpu_count:
        problems.append(Problem("FT-004", f"cpu_threads must be between 1 and {machine.cpu_count} (got {request.cpu_threads})", "cpu_threads"))
    if request.num_epochs <= 0:
        problems.append(Problem("FT-008", f"num_epochs must be greater than 0 (got {request.num_epochs})", "num_epochs"))
    if request.learning_rate <= 0:
        problems.append(Problem("FT-009", f"learning_rate must be greater than 0 (got {request.learning_rate})", "learning_rate"))
    if not 0 < request.dataset_fraction <= 1:
        problems.append(Problem("FT-010", f"dataset_fraction must be in (0, 1] (got {request.dataset_fraction})", "dataset_fraction"))
    if not 0 < request.train_test_split <= 1:
        problems.append(Problem("FT-011", f"train_test_split must be in (0, 1] (got {request.train_test_split})", "train_test_split"))
    return problems


def _device_problems(request: FineTuneRequest, machine: Machine) -> tuple[DeviceChoice | None, list[Problem]]:
    devices, problems = choose_devices(request.gpus, machine, "FT-005")
    if devices is not None:
        limit = 1 if devices.kind == "cpu" else len(devices.gpu_ids)
        if not 1 <= request.num_processes <= limit:
            problems.append(Problem("FT-007", f"num_processes must be between 1 and {limit} for devices '{devices.label}' (got {request.num_processes})", "num_processes"))
        if request.training_mode == "qlora" and devices.kind == "cpu":
            problems.append(Problem("FT-012", "QLoRA needs a CUDA GPU (bitsandbytes 4-bit); choose LoRA on CPU", "training_mode"))
    return devices, problems


def _memory_problem(tx: Transaction, request: FineTuneRequest, devices: DeviceChoice, machine: Machine) -> Problem | None:
    model = tx.models.get(request.base_model_id)
    if model is None or not model.num_parameters or request.training_mode not in ("lora", "qlora", "full"):
        return None
    config = read_local_model_config(model.location) if model.location else None
    args = TrainingArguments()
    if request.training_arguments_config_id:
        record = tx.configs.get(request.training_arguments_config_id)
        if record is not None and record.type == "training_arguments":
            args = resolve("training_arguments", record.values)
    hidden = int((config or {}).get("hidden_size") or 0)
    layers = int((config or {}).get("num_hidden_layers") or 0)
    tokens = args.max_tokens_per_batch or args.per_device_train_batch_size * args.max_length
    estimate = estimate_training_memory(model.num_parameters, request.training_mode, tokens, hidden, layers)
    if devices.kind == "cpu":
        available, where = machine.memory_available_mib, "available host memory"
    else:
        available = min(machine.gpu(i).memory_free_mib for i in devices.gpu_ids)
        where = f"free memory on GPU {devices.label}"
    if estimate.total_mib > available:
        return Problem("FT-006", f"estimated peak memory {estimate.total_mib / 1024:.1f} GiB exceeds the {available / 1024:.1f} GiB of {where}; use QLoRA, a smaller micro-batch or max_length, or another device", "memory")
    return None


def validate_fine_tune(tx: Transaction, request: FineTuneRequest, machine: Machine) -> list[Problem]:
    problems = _local_problems(request, machine)
    devices, device_problems = _device_problems(request, machine)
    problems += device_problems
    if request.adapter_name and ADAPTER_NAME.match(request.adapter_name) and tx.adapters.find_one(name=request.adapter_name):
        problems.append(Problem("FT-002", f"an adapter named '{request.adapter_name}' already exists", "adapter_name"))
    if tx.models.get(request.base_model_id or "") is None:
        problems.append(Problem("FT-013", f"model '{request.base_model_id}' not found", "base_model_id"))
    dataset = tx.datasets.get(request.dataset_id or "")
    if dataset is None:
        problems.append(Problem("FT-014", f"dataset '{request.dataset_id}' not found", "dataset_id"))
    if request.prompt_id:
        prompt = tx.prompts.get(request.prompt_id)
        if prompt is None:
            problems.append(Problem("FT-015", f"prompt '{request.prompt_id}' not found", "prompt_id"))
        elif dataset is not None:
            templates = {"prompt_template": prompt.prompt_template, "input_template": prompt.input_template,
                         "completion_template": prompt.completion_template}
            for problem in check_templates(templates, dataset.columns):
                problems.append(Problem("FT-015", f"prompt '{prompt.name}' does not fit dataset '{dataset.name}': {problem.message}", "prompt_id"))
    elif dataset is not None and dataset.format == "plain" and request.method == "sft":
        problems.append(Problem("FT-015", f"dataset '{dataset.name}' has plain columns ({', '.join(dataset.columns)}); choose a prompt that maps them to text", "prompt_id"))
    for field, config_type in CONFIG_REFERENCES.items():
        config_id = getattr(request, field)
        if config_id:
            record = tx.configs.get(config_id)
            if record is None:
                problems.append(Problem("FT-016", f"{field} '{config_id}' not found", field))
            elif record.type != config_type:
                problems.append(Problem("FT-016", f"{field} '{config_id}' is a {record.type} config, not {config_type}", field))
    if request.training_mode == "qlora" and not request.bitsandbytes_config_id:
        problems.append(Problem("FT-012", "QLoRA needs a bitsandbytes_config_id (the presets ship one)", "bitsandbytes_config_id"))
    if devices is not None and not problems:
        memory = _memory_problem(tx, request, devices, machine)
        if memory:
            problems.append(memory)
    return problems
