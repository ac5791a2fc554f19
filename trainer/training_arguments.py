"""A spec's training settings, translated into ``SFTConfig`` keyword arguments for the device at hand.

The spec carries the user's settings as ftapp stored them (``ftapp.config_schemas.TrainingArguments``):
some are wishes ("auto"), some only work on some hardware. This module decides, as a pure
function of the settings and the device's capabilities, what the Trainer really gets, and says in
``notes`` what it changed, so the log and the ``started`` event explain a run that differs from
its config. Standard library only: the rules are unit-tested without torch.

TRL 1.x / transformers 5 names: ``max_length`` (not ``max_seq_length``), ``eval_strategy``,
``warmup_steps`` (a float below 1 is a ratio; ``warmup_ratio`` is gone), ``activation_checkpointing``
(``gradient_checkpointing`` is its deprecated alias and mirrors it). ``SFTConfig`` defaults ``bf16``
and gradient checkpointing to on, which fails on CPU, so both are always set here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KNOWN_SETTINGS = frozenset({
    "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
    "weight_decay", "max_grad_norm", "optim", "per_device_train_batch_size", "gradient_accumulation_steps",
    "max_tokens_per_batch", "per_device_eval_batch_size", "max_length", "packing", "padding_free", "bf16", "fp16",
    "gradient_checkpointing", "use_liger_kernel", "torch_compile", "completion_only_loss", "assistant_only_loss",
    "neftune_noise_alpha", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit",
    "logging_steps", "seed", "dataloader_num_workers", "report_to", "disable_tqdm", "ddp_find_unused_parameters",
})
# Copied to SFTConfig unchanged when present; absent ones keep SFTConfig's defaults.
PASSED_THROUGH = (
    "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "weight_decay", "max_grad_norm",
    "per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size", "max_length",
    "packing", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit", "logging_steps",
    "seed", "dataloader_num_workers", "ddp_find_unused_parameters",
)
# Optimizers that need CUDA: fused kernels, or bitsandbytes' 8-bit/paged states.
CUDA_ONLY_OPTIMIZERS = frozenset({"adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_32bit"})


@dataclass(frozen=True)
class DeviceCaps:
    kind: str  # cpu | cuda
    name: str
    bf16: bool = False  # the GPU computes in bfloat16 (Ampere and later)
    flash_attention: bool = False  # flash-attn is installed: padding-free batches work
    liger: bool = False  # liger-kernel is installed


@dataclass(frozen=True)
class ResolvedTraining:
    config: dict[str, Any]  # SFTConfig keyword arguments
    dtype: str  # what to load the weights in: float32 | bfloat16 | float16
    attn_implementation: str | None  # None: the model's default
    notes: list[str] = field(default_factory=list)


def _flag(value: Any) -> str:
    """"auto"/"true"/"false", also from JSON booleans as hand-written configs have them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def resolve_training(
    settings: dict[str, Any],
    device: DeviceCaps,
    *,
    training_mode: str,
    output_dir: str,
    has_validation: bool,
    completion_only_loss: bool | None,
    assistant_only_loss: bool,
) -> ResolvedTraining:
    unknown = sorted(set(settings) - KNOWN_SETTINGS)
    if unknown:
        raise ValueError(f"spec.training has unknown settings: {', '.join(unknown)}")
    notes: list[str] = []
    config: dict[str, Any] = {key: settings[key] for key in PASSED_THROUGH if key in settings}
    config.update(
        output_dir=output_dir,  # where checkpoints go; the final result is saved elsewhere
        use_cpu=device.kind == "cpu",
        report_to="none",  # MLflow is logged by trainer.run_tracking, so the env needs no MLFLOW_* vars
        disable_tqdm=True,  # bars are noise in trainer.log; progress travels as events
        completion_only_loss=completion_only_loss,
        assistant_only_loss=assistant_only_loss,
        save_only_model=False,  # resume needs the optimizer and scheduler state
    )
    if "seed" in settings:
        config["data_seed"] = settings["seed"]
    if not has_validation and config.get("eval_strategy", "no") != "no":
        config["eval_strategy"] = "no"
        notes.append("no validation rows (train_split is 1): eval loss is not computed")
    config["warmup_steps"] = _warmup(settings)
    if settings.get("neftune_noise_alpha"):
        config["neftune_noise_alpha"] = settings["neftune_noise_alpha"]

    precision = _precision(settings, device, notes)
    config.update(bf16=precision == "bf16", fp16=precision == "fp16")
    config["activation_checkpointing"] = _gradient_checkpointing(settings, device, training_mode, notes)
    config["use_liger_kernel"] = _liger(settings, device, notes)
    config["optim"] = _optimizer(settings, device, notes)
    config["torch_compile"] = bool(settings.get("torch_compile")) and device.kind == "cuda"
    if settings.get("torch_compile") and device.kind != "cuda":
        notes.append("torch_compile off on CPU: compiling costs minutes and needs a C++ toolchain")
    attn = _batching(settings, device, config, notes)

    if precision == "bf16":
        dtype = "bfloat16"
    elif precision == "fp16" and training_mode != "full":
        dtype = "float16"  # frozen base weights; PEFT keeps the trained adapter weights in float32
    else:
        dtype = "float32"  # full fine-tuning in fp16 needs float32 master weights for the grad scaler
    return ResolvedTraining(config, dtype, attn, notes)


def _warmup(settings: dict[str, Any]) -> float:
    steps = int(settings.get("warmup_steps") or 0)
    if steps > 0:
        return steps
    # transformers 5 reads warmup_steps below 1 as a ratio of the total steps.
    return min(float(settings.get("warmup_ratio") or 0.0), 0.999)


def _precision(settings: dict[str, Any], device: DeviceCaps, notes: list[str]) -> str:
    bf16, fp16 = _flag(settings.get("bf16", "auto")), bool(settings.get("fp16", False))
    if device.kind != "cuda":
        if bf16 == "true" or fp16:
            notes.append("mixed precision off on CPU: training runs in float32")
        return "fp32"
    if bf16 == "true" or (bf16 == "auto" and device.bf16) or (fp16 and device.bf16):
        if not device.bf16:
            notes.append(f"bf16 requested but {device.name} lacks bfloat16: using fp16")
            return "fp16"
        if fp16 and bf16 != "true":
            # The seed's fp16 on bf16 weights makes the grad scaler fail ("Attempting to unscale FP16 gradients").
            notes.append(f"fp16 replaced by bf16 on {device.name}")
        return "bf16"
    return "fp16" if fp16 else "fp32"


def _gradient_checkpointing(settings: dict[str, Any], device: DeviceCaps, training_mode: str, notes: list[str]) -> bool:
    wanted = _flag(settings.get("gradient_checkpointing", "auto"))
    if device.kind != "cuda":
        if wanted == "true":
            notes.append("gradient checkpointing off on CPU: memory is not the limit there, time is")
        return False
    if wanted == "auto":
        # QLoRA is chosen to save memory and full fine-tuning needs the most; LoRA rarely needs it.
        return training_mode in ("qlora", "full")
    return wanted == "true"


def _liger(settings: dict[str, Any], device: DeviceCaps, notes: list[str]) -> bool:
    wanted = _flag(settings.get("use_liger_kernel", "auto"))
    if wanted == "false":
        return False
    usable = device.kind == "cuda" and device.liger
    if wanted == "true" and not usable:
        notes.append("liger kernels off: they need a CUDA GPU and the liger-kernel package")
    return usable


def _optimizer(settings: dict[str, Any], device: DeviceCaps, notes: list[str]) -> str:
    optim = str(settings.get("optim", "adamw_torch"))
    if device.kind != "cuda" and optim in CUDA_ONLY_OPTIMIZERS:
        notes.append(f"optimizer {optim} needs CUDA: using adamw_torch on CPU")
        return "adamw_torch"
    return optim


def _batching(settings: dict[str, Any], device: DeviceCaps, config: dict[str, Any], notes: list[str]) -> str | None:
    """Padding-free batches where flash attention can run them; the attention implementation to load."""
    budget = int(settings.get("max_tokens_per_batch") or 0)
    if not settings.get("padding_free", False):
        return None
    if device.kind != "cuda" or not device.flash_attention:
        notes.append("padding-free batches off: they need flash attention on a CUDA GPU (padded batches instead)")
        if budget:
            notes.append("max_tokens_per_batch ignored without padding-free batches")
        return None
    # TRL enforces max_length with padding-free only through BFD packing, which is padding-free by
    # construction: each packed row holds whole examples up to max_length tokens.
    config.update(packing=True, packing_strategy="bfd", padding_free=True)
    if budget:
        # One packed row per micro-batch makes the row length the per-micro-batch token budget.
        config.update(max_length=budget, per_device_train_batch_size=1)
        notes.append(f"padding-free: one packed row of up to {budget} tokens per micro-batch")
    return "flash_attention_2"


# New name -> the name older transformers 5.x releases still use (a GPU host may lag behind).
RENAMED_SINCE = {"activation_checkpointing": "gradient_checkpointing"}


def fit_to_installed(config: dict[str, Any], accepted: set[str]) -> dict[str, Any]:
    """``config`` with names the installed ``SFTConfig`` knows: renamed fields go back to their old
    name, and a warm-up ratio passed as a fractional ``warmup_steps`` goes to ``warmup_ratio`` where
    that field still exists."""
    fitted = dict(config)
    for new, old in RENAMED_SINCE.items():
        if new in fitted and new not in accepted and old in accepted:
            fitted[old] = fitted.pop(new)
    warmup = fitted.get("warmup_steps")
    if isinstance(warmup, float) and warmup < 1 and "warmup_ratio" in accepted:
        fitted.update(warmup_ratio=warmup, warmup_steps=0)
    return fitted
