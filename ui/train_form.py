"""The Train tab's widget values and how they become one ``FineTuneRequest``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ftapp.errors import NotFoundError, Problem, ValidationError
from ftapp.prompts import Preset, check_config, parse_config
from ftapp.runs import FineTuneRequest, Machine, MemoryEstimate, Preflight, preset_configs
from ui.train_framework import NO_CONFIG
from ui.train_method import NO_ADAPTER, method_settings, rewards_from_table

NO_PROMPT = "none"  # prompt ids are UUIDs, so this cannot name a real prompt
# Layouts the trainer turns into text by itself; plain columns need a prompt that maps them.
SELF_DESCRIBING_FORMATS = ("messages", "alpaca", "sharegpt")


@dataclass(frozen=True)
class TrainForm:
    """The Train tab's inputs by name: ``train.render`` passes each widget as the field of its name,
    and the API's ``/preflight`` and ``/start_training`` take the fields as their parameters.

    A cleared number field is ``None`` and means "the preset's value".
    """

    model_id: str | None
    dataset_id: str | None
    prompt_id: str | None
    adapter_name: str
    method: str
    training_mode: str
    preset: str | None
    devices: str | None
    num_epochs: float | None
    max_steps: float | None
    learning_rate: float | None
    batch_size: float | None
    grad_accumulation: float | None
    max_length: float | None
    lora_r: float | None
    lora_alpha: float | None
    dataset_fraction: float
    train_split: float
    extra_arguments: str
    # The method fields (ui.train_method); a cleared one means the method's default.
    dpo_beta: float | None = None
    dpo_loss_type: str | None = None
    num_generations: float | None = None
    max_completion_length: float | None = None
    temperature: float | None = None
    grpo_beta: float | None = None
    rewards: Any = None  # the rewards table: rows of [use, kind, weight, setting, help]
    init_adapter_id: str | None = None
    # ui.train_framework: trl, or axolotl with a stored axolotl config (its YAML replaces the hyper-parameter fields).
    framework: str = "trl"
    axolotl_config_id: str | None = None
    strategy: str | None = "auto"  # auto | ddp | fsdp2: how several GPUs share the model (ftapp.runs.STRATEGY_HELP)


def find_preset(presets: list[Preset], name: str | None) -> Preset:
    preset = next((p for p in presets if p.name == name), None)
    if preset is None:
        raise NotFoundError("preset", name or "")
    return preset


def extra_arguments(text: str) -> dict[str, Any]:
    """The "All training arguments" editor as a dict; its CF-002 message when it is not JSON."""
    if not (text or "").strip():
        return {}
    values, problems = parse_config("training_arguments", text)
    if problems:
        raise ValidationError(problems)
    if not isinstance(values, dict):
        raise ValidationError(check_config("training_arguments", values))  # CF-005: not a JSON object
    return values


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def training_overrides(form: TrainForm) -> dict[str, Any]:
    """The main fields as TrainingArguments keys; the editor's keys come last and win."""
    fields = {
        "max_steps": _int(form.max_steps),  # -1 runs the epochs, as everywhere (TrainingSettings, the CLI, the spec)
        "per_device_train_batch_size": _int(form.batch_size),
        "gradient_accumulation_steps": _int(form.grad_accumulation),
        "max_length": _int(form.max_length),
    }
    overrides = {key: value for key, value in fields.items() if value is not None}
    overrides.update(extra_arguments(form.extra_arguments))
    return overrides


def lora_overrides(form: TrainForm) -> dict[str, Any]:
    """The form's rank and alpha, set on top of the preset's LoRA config."""
    values: dict[str, Any] = {}
    if form.lora_r is not None:
        values["r"] = int(form.lora_r)
    if form.lora_alpha is not None:
        values["lora_alpha"] = form.lora_alpha
    return values


def devices_and_processes(devices: str | None) -> tuple[str, int]:
    """ "0,1" trains with one process per GPU (DDP); "auto", "cpu" and a single GPU use one."""
    chosen = devices or "auto"
    if chosen in ("auto", "cpu"):
        return chosen, 1
    return chosen, len([part for part in chosen.split(",") if part.strip()])


def fine_tune_request(form: TrainForm, preset: Preset) -> FineTuneRequest:
    training = preset.configs["training_arguments"].values
    gpus, processes = devices_and_processes(form.devices)
    axolotl = form.framework == "axolotl"  # the YAML decides an Axolotl run's hyper-parameters, not the fields
    # A cleared picker sends "" and a fresh API call may send None: both mean "none chosen" (FT-013, FT-014).
    return FineTuneRequest(
        base_model_id=form.model_id or "",
        dataset_id=form.dataset_id or "",
        adapter_name=(form.adapter_name or "").strip(),
        prompt_id=None if form.prompt_id in (None, "", NO_PROMPT) else form.prompt_id,
        method=form.method,
        training_mode=form.training_mode,
        gpus=gpus,
        num_processes=processes,
        strategy=form.strategy or "auto",
        num_epochs=form.num_epochs if form.num_epochs is not None else float(training["num_train_epochs"]),
        learning_rate=form.learning_rate if form.learning_rate is not None else float(training["learning_rate"]),
        dataset_fraction=form.dataset_fraction,
        train_test_split=form.train_split,
        **preset_configs(preset, form.training_mode),
        overrides={} if axolotl else training_overrides(form),
        lora_overrides=lora_overrides(form) if form.training_mode != "full" and not axolotl else {},
        method_settings=method_settings(
            form.method,
            form.dpo_beta,
            form.dpo_loss_type,
            form.num_generations,
            form.max_completion_length,
            form.temperature,
            form.grpo_beta,
        ),
        rewards=rewards_from_table(form.rewards) if form.method == "grpo" else (),
        # Hidden for SFT, so a choice left there from another method does not count.
        init_adapter_id=form.init_adapter_id
        if form.method in ("dpo", "grpo") and form.init_adapter_id not in (None, "", NO_ADAPTER)
        else None,
        framework=form.framework or "trl",
        axolotl_config_id=form.axolotl_config_id if axolotl and form.axolotl_config_id not in ("", NO_CONFIG) else None,
    )


def device_choices(machine: Machine) -> list[tuple[str, str]]:
    gib = 1024
    auto = "auto: the GPU with the most free memory" if machine.gpus else "auto: the CPU (no GPU found)"
    choices = [(auto, "auto"), (f"CPU ({machine.cpu_count} cores, {machine.memory_available_mib / gib:.0f} GiB free)", "cpu")]
    choices += [
        (f"GPU {g.index}: {g.name}, {g.memory_free_mib / gib:.1f} of {g.memory_total_mib / gib:.1f} GiB free", str(g.index))
        for g in machine.gpus
    ]
    if len(machine.gpus) > 1:
        ids = ",".join(str(g.index) for g in machine.gpus)
        choices.append((f"all {len(machine.gpus)} GPUs ({ids}), one process each", ids))
    return choices


def _size(mib: float) -> str:
    # A tiny model's estimate in GiB reads "0.00 GiB", as if it needed nothing.
    return f"{mib:,.0f} MiB" if mib < 1024 else f"{mib / 1024:.1f} GiB"


def _time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown (no throughput figure for this device)"
    if seconds < 90:
        return f"≈ {seconds:.0f} s"
    return f"≈ {seconds / 60:.0f} min" if seconds < 2 * 3600 else f"≈ {seconds / 3600:.1f} h"


def estimate_line(preflight: Preflight) -> str:
    verdict = "fits" if preflight.fits else "does NOT fit"
    return (
        f"peak memory {_size(preflight.memory.total_mib)} of {_size(preflight.available_mib)} free on "
        f"{preflight.device} ({verdict}); time {_time(preflight.seconds)}"
    )


def _method_memory(memory: MemoryEstimate) -> str:
    parts = [
        f"reference model {_size(memory.reference_mib)}" if memory.reference_mib else "",
        f"generation KV cache {_size(memory.generation_mib)}" if memory.generation_mib else "",
    ]
    return "".join(f" · {part}" for part in parts if part)


def _pace(preflight: Preflight) -> str:
    timing = preflight.timing
    if timing.step_s is None or preflight.paced_seconds < preflight.compute_seconds:
        return ""
    return f": {preflight.optimizer_steps:,} steps at {timing.step_s:.2f} s each, {timing.pace_source()}"


def preflight_markdown(preflight: Preflight, problems: list[Problem]) -> str:
    memory = preflight.memory
    share = memory.total_mib / preflight.available_mib if preflight.available_mib else float("inf")
    verdict = "✅ fits" if preflight.fits else "❌ does not fit"
    when = _time(preflight.seconds)
    lines = [
        f"### Preflight: {verdict} on {preflight.device}",
        "| | Estimate |",
        "|---|---|",
        f"| Peak memory | **{_size(memory.total_mib)}** of {_size(preflight.available_mib)} free ({share:.0%}) |",
        f"| of which | weights {_size(memory.weights_mib)} · trained state {_size(memory.trainable_mib)} · "
        f"activations {_size(memory.activations_mib)}{_method_memory(memory)} |",
        f"| Training tokens | ~{preflight.train_tokens:,} |",
        f"| Speed | ~{preflight.tokens_per_s:,.0f} tokens/s |",
        f"| Start-up | {_time(preflight.timing.startup_s)}: Python, the torch/transformers imports, model and data loading |",
        f"| Steps | {_time(preflight.step_seconds)}{_pace(preflight)} |",
        f"| Finishing | {_time(preflight.timing.finish_s)}: saving the adapter, the last evaluation, MLflow |",
        f"| Time | **{when}** |",
        "",
        "An order-of-magnitude estimate: the steps from the model's size and a sample of the rows, the start-up and "
        f"finishing from {preflight.timing_source}. The run's own throughput shows in the Runs tab.",
    ]
    if preflight.strategy_reasons:  # DDP or FSDP2, with both per-GPU peaks
        lines += ["", f"**Strategy: {preflight.strategy.upper()}**", *(f"- {reason}" for reason in preflight.strategy_reasons)]
    if preflight.changes:  # the recipe the trainer will run to fit this GPU's free memory, and why
        lines += ["", "**Changed to fit the free memory:**", *(f"- {change}" for change in preflight.changes)]
    lines += [f"\n**{problem}**" for problem in problems]
    return "\n".join(lines)
