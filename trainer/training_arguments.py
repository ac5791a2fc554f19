"""A spec's training settings, translated into ``SFTConfig`` keyword arguments for the device at hand.

The spec carries the user's settings as ftapp stored them (``ftapp.prompts.config_schemas.TrainingSettings``):
some are wishes ("auto"), some only work on some hardware. This module decides, as a pure
function of the settings and the device's capabilities, what the Trainer really gets, and says in
``notes`` what it changed, so the log and the ``started`` event explain a run that differs from
its config. Standard library only: the rules are unit-tested without torch.

TRL 1.x / transformers 5 names: ``max_length`` (not ``max_seq_length``), ``eval_strategy``,
``warmup_steps`` (a float below 1 is a ratio; ``warmup_ratio`` is gone), ``activation_checkpointing``
(``gradient_checkpointing`` is its deprecated alias and mirrors it). ``SFTConfig`` defaults ``bf16``
and gradient checkpointing to on, which fails on CPU, so both are always set here.

The speed recipe on a CUDA GPU (issue 7, measured by ``bench/train_throughput.py``): padding-free
micro-batches of whole examples packed to a token budget, with the best attention that can run
them (flash-attention when installed, else the same kernels as PyTorch ships them in
``torch.nn.attention.varlen``, else PyTorch's flex_attention; SDPA with padding where none can), Liger's fused kernels when installed, the fused AdamW, TRL's chunked loss (always on
in TRL 1.16), and, when the GPU's free memory cannot hold the requested micro-batch, the fastest recipe that fits
(``trainer.protocol.plan_fit``, the same plan ftapp's preflight shows: fewer rows per micro-batch with more
accumulation, gradient checkpointing, offloaded checkpoints, 8-bit optimizer states). QLoRA keeps checkpointing
unless told otherwise: its point is a small footprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.padding_free import padding_free_attention
from trainer.protocol import FitPlan, ModelShape, method_levers, method_workload, plan_fit

KNOWN_SETTINGS = frozenset(
    {
        "num_train_epochs",
        "max_steps",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_ratio",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "optim",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_tokens_per_batch",
        "per_device_eval_batch_size",
        "max_length",
        "packing",
        "padding_free",
        "bf16",
        "fp16",
        "gradient_checkpointing",
        "use_liger_kernel",
        "torch_compile",
        "completion_only_loss",
        "assistant_only_loss",
        "neftune_noise_alpha",
        "eval_strategy",
        "eval_steps",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "seed",
        "dataloader_num_workers",
        "report_to",
        "disable_tqdm",
        "ddp_find_unused_parameters",
    }
)
# Copied to SFTConfig unchanged when present; absent ones keep SFTConfig's defaults.
PASSED_THROUGH = (
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "per_device_eval_batch_size",
    "max_length",
    "packing",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "seed",
    "dataloader_num_workers",
    "ddp_find_unused_parameters",
)
# Optimizers that need CUDA: fused kernels, or bitsandbytes' 8-bit/paged states.
CUDA_ONLY_OPTIMIZERS = frozenset({"adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_32bit"})


GIB = 1024**3


@dataclass(frozen=True)
class DeviceCaps:
    kind: str  # cpu | cuda
    name: str
    bf16: bool = False  # the GPU computes in bfloat16 (Ampere and later)
    flash_attention: bool = False  # flash-attn is installed: padding-free batches work
    liger: bool = False  # liger-kernel is installed
    flex_attention: bool = False  # torch's flex_attention runs on this GPU: padding-free batches work
    varlen_attention: bool = False  # torch ships varlen flash attention (trainer.varlen_attention): no compile
    memory_free_bytes: int = 0  # free GPU memory when the run starts (0: unknown)
    bitsandbytes: bool = False  # bitsandbytes is installed: 8-bit optimizer states are possible


@dataclass(frozen=True)
class MethodLoad:
    """What the memory plan needs to know of the method besides the settings (``trainer.protocol.method_workload``)."""

    method: str = "sft"  # sft | dpo | grpo
    lora_rank: int = 16
    prompt_tokens: int | None = None  # GRPO: the longest prompt
    completion_tokens: int = 0  # GRPO: max_completion_length
    beta: float = 0.0  # DPO/GRPO: a KL term needs a reference model
    shards: int = 1  # FSDP2: the ranks the weights and trained state are split over (trainer.protocol.parallelism)


@dataclass(frozen=True)
class ResolvedTraining:
    config: dict[str, Any]  # SFTConfig keyword arguments
    dtype: str  # what to load the weights in: float32 | bfloat16 | float16
    attn_implementation: str | None  # None: the model's default
    notes: list[str] = field(default_factory=list)
    compile_blocks: bool = False  # torch.compile each decoder layer (regional compilation)
    memory_plan: FitPlan | None = None  # the recipe chosen to fit the GPU's free memory (None: not planned)

    def recipe(self) -> dict[str, Any]:
        """The speed-relevant choices, for the run's ``started`` event, its log and ``recipe.json``."""
        config = self.config
        rows = int(config.get("per_device_train_batch_size") or 8)
        return {
            "attn_implementation": self.attn_implementation or "default",
            "padding_free": bool(config.get("padding_free")),
            "tokens_per_micro_batch": rows * int(config["max_length"]) if config.get("padding_free") and config.get("max_length") else None,
            "rows_per_micro_batch": rows,
            "gradient_checkpointing": bool(config.get("activation_checkpointing")),
            "activation_offloading": bool(config.get("activation_offloading")),
            "gradient_accumulation_steps": int(config.get("gradient_accumulation_steps") or 1),
            "liger": bool(config.get("use_liger_kernel")),
            "optimizer": config.get("optim"),
            "dtype": self.dtype,
            "compile_blocks": self.compile_blocks,
            "planned_peak_gib": round(self.memory_plan.need.total / GIB, 2) if self.memory_plan else None,
            "free_gib": round(self.memory_plan.free_bytes / GIB, 2) if self.memory_plan else None,
        }


def _flag(value: Any) -> str:
    """ "auto"/"true"/"false", also from JSON booleans as hand-written configs have them."""
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
    model: ModelShape | None = None,
    load: MethodLoad = MethodLoad(),
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
    config["use_liger_kernel"] = _liger(settings, device, notes)
    config["optim"] = _optimizer(settings, device, notes)
    # Trainer's torch_compile compiles the whole model (minutes, and a recompile per batch shape);
    # ftapp compiles each decoder layer instead (model_loading.compile_blocks), once for all layers.
    config["torch_compile"] = False
    compile_blocks = bool(settings.get("torch_compile")) and device.kind == "cuda" and load.shards == 1
    if settings.get("torch_compile") and device.kind != "cuda":
        notes.append("torch_compile off on CPU: compiling costs minutes and needs a C++ toolchain")
    elif settings.get("torch_compile") and load.shards > 1:
        # FSDP2 gathers each layer's weights in hooks around its forward; compiled layers would have to trace them.
        notes.append("torch_compile off under FSDP2: the layers' all-gather hooks stay outside compiled code")
    if compile_blocks and config["use_liger_kernel"]:
        # Measured on an H200 (torch 2.11, liger-kernel 0.8.5): dynamo fails on Liger's Triton kernels in a compiled
        # layer's training forward (AssertionError), so the run failed; without Liger the compiled layers train.
        config["use_liger_kernel"] = False
        notes.append(
            "liger kernels off: torch_compile is on, and torch.compile cannot trace Liger's Triton kernels (the run "
            "would fail); the compiled layers fuse that element-wise work themselves"
        )
    attn = padding_free_attention(settings, device, config, notes, training_mode)
    plan = _fit_memory(settings, device, training_mode, config, model, load, notes)

    if precision == "bf16":
        dtype = "bfloat16"
    elif precision == "fp16" and training_mode != "full":
        dtype = "float16"  # frozen base weights; PEFT keeps the trained adapter weights in float32
    else:
        dtype = "float32"  # full fine-tuning in fp16 needs float32 master weights for the grad scaler
    return ResolvedTraining(config, dtype, attn, notes, compile_blocks, plan)


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


def _fit_memory(
    settings: dict[str, Any],
    device: DeviceCaps,
    training_mode: str,
    config: dict[str, Any],
    model: ModelShape | None,
    load: MethodLoad,
    notes: list[str],
) -> FitPlan | None:
    """Set micro-batch rows, accumulation, checkpointing, offloading and the optimizer to the fastest recipe the
    GPU's free memory holds (``trainer.protocol.plan_fit``); returns the plan (None where nothing is measured)."""
    wanted = _flag(settings.get("gradient_checkpointing", "auto"))
    config["activation_checkpointing"] = False
    if device.kind != "cuda":
        if wanted == "true":
            notes.append("gradient checkpointing off on CPU: memory is not the limit there, time is")
        return None
    if model is None or not device.memory_free_bytes:
        # Nothing to estimate with: the user's word, else full fine-tuning (the most memory) and QLoRA (the smallest
        # footprint, its reason to be) recompute.
        config["activation_checkpointing"] = wanted == "true" or (wanted == "auto" and training_mode in ("full", "qlora"))
        return None
    rows, accumulation = int(config.get("per_device_train_batch_size") or 8), int(config.get("gradient_accumulation_steps") or 1)
    work = method_workload(
        load.method,
        training_mode,
        rows=rows,
        accumulation=accumulation,
        max_length=int(config.get("max_length") or 1024),
        lora_rank=load.lora_rank,
        liger=bool(config.get("use_liger_kernel")),
        optimizer=str(config.get("optim")),
        prompt_tokens=load.prompt_tokens,
        completion_tokens=load.completion_tokens,
        beta=load.beta,
        shards=load.shards,
    )
    levers = method_levers(load.method, training_mode, wanted, bitsandbytes=device.bitsandbytes, sharded=load.shards > 1)
    plan = plan_fit(model, work, device.memory_free_bytes, levers)
    if not plan.fits:
        config["activation_checkpointing"] = bool(levers.checkpointing)
        notes.append(
            f"the memory estimate (~{plan.need.total / GIB:.1f} GiB, {device.memory_free_bytes / GIB:.1f} GiB free) "
            f"says this run does not fit; trying it as asked. {'; '.join(plan.advice)}"
        )
        return plan
    recipe = plan.recipe
    config.update(
        per_device_train_batch_size=recipe.rows,
        gradient_accumulation_steps=recipe.accumulation,
        activation_checkpointing=recipe.checkpointing,
    )
    if recipe.offload:
        config["activation_offloading"] = True
    if recipe.optimizer_8bit:
        config["optim"] = "adamw_8bit"
    notes.extend(plan.changes)
    return plan


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
