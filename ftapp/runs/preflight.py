"""Before any GPU time is spent: will the run fit, and roughly how long will it take? (seeds 000, 003; issue 19)

Memory on a GPU comes from ``trainer.protocol.plan_fit``, the function the trainer itself calls with the free memory
it measures at start: when the requested recipe does not fit, the preflight shows the recipe the trainer will use
instead (fewer rows per micro-batch with more accumulation, checkpointing, offloading, 8-bit optimizer states) and
why, and refuses (FT-006) only what fits no way, saying what would. On the CPU, or without the model's config.json,
``memory.estimate_training_memory`` gives a coarser figure.

Time comes from the number of training tokens and a per-device throughput table: peak bf16 TFLOP/s at an assumed
40% utilisation, with LoRA costing ~4N FLOPs per token (forward + input gradients), full fine-tuning ~6N, each extra
forward pass (DPO's and GRPO's reference) ~2N, and the recomputation the memory plan adds; DPO's and GRPO's own
costs besides (launch-bound passes, GRPO's sampling) come from ``method_time``. The trainer process's start-up
(imports, model and data loading) and finish (saving, MLflow) come on top, and the steps take at least as long as
the same model's steps of the same kind took here (``run_timing`` measures both on this home's last runs; a small
model's steps cost the framework's per-step work, not its FLOPs). It is an order-of-magnitude estimate shown to the
user, not a promise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.util import find_spec

from ftapp.datasets.preference_rows import sequence_chars
from ftapp.prompts.config_schemas import GrpoSettings, TrainingSettings, resolve
from ftapp.prompts.templates import render
from ftapp.runs.devices import DeviceChoice
from ftapp.runs.machine import Machine
from ftapp.runs.memory import MemoryEstimate, estimate_training_memory
from ftapp.runs.method_time import method_seconds
from ftapp.runs.run_timing import FIRST_RUN, RunTiming
from trainer.protocol import (
    DDP,
    FSDP2,
    FSDP_COST,
    FitPlan,
    ModelShape,
    StrategyPlan,
    choose_strategy,
    method_levers,
    method_workload,
    qlora_micro_batch_rows,
)

PEAK_BF16_TFLOPS = {
    "H200": 790,
    "H100": 790,
    "A100": 312,
    "L40S": 362,
    "L40": 181,
    "4090": 165,
    "A6000": 155,
    "A10": 125,
    "L4": 121,
    "V100": 125,
    "T4": 65,
}
CPU_TFLOPS = 0.05  # a few cores of fp32 matmul in practice
UTILISATION = 0.4
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class Preflight:
    device: str
    memory: MemoryEstimate
    available_mib: float
    train_tokens: int
    tokens_per_s: float
    changes: tuple[str, ...] = ()  # how the recipe was changed to fit the free memory, and why
    advice: tuple[str, ...] = ()  # when nothing fits: what would
    planned: bool = False  # the memory plan decided ``fits`` (a GPU with the model's config known)
    planned_fits: bool = False
    method_seconds: float = 0.0  # DPO/GRPO: per-step overhead and GRPO's sampling, besides the training FLOPs
    strategy: str = DDP  # how several GPUs share the model: what the spec will say (trainer.protocol.choose_strategy)
    strategy_reasons: tuple[str, ...] = ()  # why, with DDP's and FSDP2's per-GPU peaks
    # The trainer process's start-up and finishing, and the pace of this model's steps here (``run_timing``).
    timing: RunTiming = FIRST_RUN["cpu"]
    optimizer_steps: int = 0

    @property
    def fits(self) -> bool:
        return self.planned_fits if self.planned else self.memory.total_mib <= self.available_mib

    @property
    def compute_seconds(self) -> float:
        """The steps' FLOPs at the estimated throughput, and DPO's and GRPO's own costs."""
        if self.tokens_per_s <= 0:
            return float("inf")
        return self.train_tokens / self.tokens_per_s + self.method_seconds

    @property
    def paced_seconds(self) -> float:
        """The steps at the pace this model's steps were measured at here (0 when never)."""
        return self.optimizer_steps * (self.timing.step_s or 0.0)

    @property
    def step_seconds(self) -> float:
        return max(self.compute_seconds, self.paced_seconds)

    @property
    def seconds(self) -> float:
        return self.timing.startup_s + self.step_seconds + self.timing.finish_s

    @property
    def timing_source(self) -> str:
        """Where the start-up and finishing times come from, for the preflight's reader."""
        return self.timing.source("cpu" if self.device == "cpu" else "cuda")

    def summary(self) -> str:
        minutes = self.seconds / 60
        verdict = "fits" if self.fits else "does NOT fit"
        text = (
            f"peak memory ~{self.memory.total_mib / 1024:.1f} GiB of {self.available_mib / 1024:.1f} GiB "
            f"on {self.device} ({verdict}); ~{self.train_tokens:,} training tokens at ~{self.tokens_per_s:,.0f} "
            f"tokens/s ≈ {minutes:.1f} min with the process's start-up (~{self.timing.startup_s:.0f} s) and finish "
            f"(~{self.timing.finish_s:.0f} s)"
        )
        if self.strategy_reasons:
            text += "; strategy: " + "; ".join(self.strategy_reasons)
        if self.changes:
            text += "; to fit: " + "; ".join(self.changes)
        if self.advice:
            text += "; would fit: " + "; ".join(self.advice)
        return text


def _peak_tflops(devices: DeviceChoice, machine: Machine) -> float:
    if devices.kind == "cpu":
        return CPU_TFLOPS
    gpu = machine.gpu(devices.gpu_ids[0])
    name = gpu.name if gpu else ""
    per_gpu = next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), 100.0)
    return per_gpu * len(devices.gpu_ids)


def average_tokens(rows: list[dict], template: str | None) -> float:
    if not rows:
        return 256.0
    texts = [render(template, row) if template else json.dumps(row, ensure_ascii=False) for row in rows]
    return max(1.0, sum(len(t) for t in texts) / len(texts) / CHARS_PER_TOKEN)


def kv_size(config: dict) -> int:
    """Keys (or values) cached per token and layer: fewer than the hidden size with grouped-query attention."""
    hidden, heads = int(config.get("hidden_size") or 0), int(config.get("num_attention_heads") or 0)
    head_dim = int(config.get("head_dim") or (hidden // heads if heads else 0))
    return head_dim * int(config.get("num_key_value_heads") or heads)


@dataclass(frozen=True)
class Workload:
    """What one micro-batch holds and one row costs, by method."""

    micro_batch_tokens: int  # every sequence trained at once
    tokens_per_row: float  # trained per row and epoch
    generation_tokens: int = 0  # GRPO: the generation batch, whose keys and values are cached
    reference_model: bool = False
    extra_passes: float = 0.0  # forward passes per token besides training (reference, generation), ~2N FLOPs each


def workload(
    method: str, args: TrainingSettings, sample_rows: list[dict], template: str | None, input_template: str | None, method_settings: dict
) -> Workload:
    batch = args.per_device_train_batch_size
    if method == "dpo":
        # Chosen and rejected both go through the model: two sequences per row. The reference
        # forward runs without gradients, so it keeps no activations.
        chars = [sequence_chars(row) for row in sample_rows]
        per_sequence = min(max(1.0, sum(chars) / len(chars) / CHARS_PER_TOKEN) if chars else 256.0, args.max_length)
        return Workload(int(2 * batch * per_sequence), 2 * per_sequence, reference_model=True, extra_passes=1)
    if method == "grpo":
        # TRL's per_device_train_batch_size counts completions: batch / num_generations prompts each
        # with num_generations completions of up to max_completion_length tokens. The generation
        # batch (batch × gradient_accumulation_steps sequences) holds its KV cache while sampling.
        grpo = resolve(GrpoSettings, method_settings)
        per_sequence = min(average_tokens(sample_rows, input_template or template), args.max_length) + grpo.max_completion_length
        generation = int(batch * args.gradient_accumulation_steps * per_sequence)
        return Workload(
            int(batch * per_sequence),
            grpo.num_generations * per_sequence,
            generation,
            reference_model=grpo.beta > 0,
            extra_passes=1 + (grpo.beta > 0),
        )
    per_example = min(average_tokens(sample_rows, template), args.max_length)
    return Workload(args.max_tokens_per_batch or int(batch * per_example), per_example)


def estimate(
    *,
    num_parameters: int,
    hidden_size: int,
    num_layers: int,
    training_mode: str,
    training: dict,
    train_rows: int,
    sample_rows: list[dict],
    template: str | None,
    devices: DeviceChoice,
    machine: Machine,
    method: str = "sft",
    method_settings: dict | None = None,
    input_template: str | None = None,
    kv_units: int = 0,
    config: dict | None = None,
    lora_rank: int = 16,
    timing: RunTiming | None = None,
    strategy: str = "auto",
    processes: int = 1,
) -> Preflight:
    args = resolve(TrainingSettings, training)
    load = workload(method, args, sample_rows, template, input_template, method_settings or {})
    memory = estimate_training_memory(
        num_parameters,
        training_mode,
        load.micro_batch_tokens,
        hidden_size,
        num_layers,
        load.reference_model,
        load.generation_tokens,
        kv_units,
    )
    if args.max_steps > 0:
        tokens = args.max_steps * args.gradient_accumulation_steps * load.micro_batch_tokens
    else:
        tokens = int(train_rows * args.num_train_epochs * load.tokens_per_row)
    passes = (6 if training_mode == "full" else 4) + 2 * load.extra_passes
    flops_per_token = passes * num_parameters * (1.4 if training_mode == "qlora" else 1.0)
    tokens_per_s = _peak_tflops(devices, machine) * 1e12 * UTILISATION / max(flops_per_token, 1)
    if devices.kind == "cpu":
        available = machine.memory_available_mib
    else:
        # The chosen GPUs are the machine's (choose_devices checked); none found would be no memory, not a crash.
        available = min((g.memory_free_mib for g in machine.gpus if g.index in devices.gpu_ids), default=0)
    shape = ModelShape.from_config(config) if config and devices.kind == "cuda" else None
    choice = (
        _plan(
            shape,
            method,
            training_mode,
            args,
            method_settings or {},
            sample_rows,
            template,
            input_template,
            lora_rank,
            int(available * 1024 * 1024),
            strategy,
            processes if devices.kind == "cuda" else 1,
        )
        if shape
        else None
    )
    plan = choice.plan if choice else None
    if choice is not None and plan is not None:
        memory = _planned_memory(plan)
        tokens_per_s /= plan.time_factor * (FSDP_COST if choice.strategy == FSDP2 else 1.0)
    steps = _optimizer_steps(args, train_rows, method, method_settings or {})
    timing = timing or FIRST_RUN[devices.kind if devices.kind == "cpu" else "cuda"]
    extra = method_seconds(
        method,
        training_mode,
        args,
        method_settings or {},
        load.reference_model,
        steps,
        num_layers,
        num_parameters,
        devices,
        machine,
        plan,
        setup_measured=timing.method == method,
    )
    return Preflight(
        devices.label,
        memory,
        float(available),
        tokens,
        tokens_per_s,
        changes=plan.changes if plan else (),
        advice=plan.advice if plan else (),
        planned=plan is not None,
        planned_fits=bool(plan and plan.fits),
        strategy=choice.strategy if choice else (FSDP2 if strategy == FSDP2 else DDP),  # unplanned: as asked, auto is DDP
        strategy_reasons=choice.reasons if choice and processes > 1 else (),
        method_seconds=extra,
        timing=timing,
        optimizer_steps=steps,
    )


def _plan(
    shape: ModelShape,
    method: str,
    training_mode: str,
    args: TrainingSettings,
    method_settings: dict,
    sample_rows: list[dict],
    template: str | None,
    input_template: str | None,
    lora_rank: int,
    free_bytes: int,
    strategy: str,
    gpus: int,
) -> StrategyPlan:
    """What the trainer will run on these GPUs: DDP or FSDP2 (``choose_strategy``), each planned with the same
    ``plan_fit`` call as ``trainer.training_arguments``, with what is known before the run (the prompts' length from
    the sample, the packages installed here)."""
    rows, max_length, accumulation = args.per_device_train_batch_size, args.max_length, args.gradient_accumulation_steps
    if method == "sft" and args.padding_free and args.max_tokens_per_batch:
        max_length = min(max_length, args.max_tokens_per_batch)
        rows = args.max_tokens_per_batch // max_length
    elif method == "sft" and args.padding_free and training_mode == "qlora":
        smaller = qlora_micro_batch_rows(rows, max_length)  # the trainer's rule: the same rows per step
        rows, accumulation = smaller, accumulation * (rows // smaller)
    # As the trainer resolves it (trainer.training_arguments): torch_compile turns Liger off, which it cannot trace.
    liger = args.use_liger_kernel != "false" and find_spec("liger_kernel") is not None and not args.torch_compile
    grpo = resolve(GrpoSettings, method_settings) if method == "grpo" else None
    prompt_template = input_template or template
    prompt = (
        int(max(len(render(prompt_template, r) if prompt_template else json.dumps(r)) for r in sample_rows) / CHARS_PER_TOKEN)
        if grpo and sample_rows
        else None
    )
    work = method_workload(
        method,
        training_mode,
        rows=rows,
        accumulation=accumulation,
        max_length=max_length,
        lora_rank=lora_rank,
        liger=liger,
        optimizer=args.optim,
        prompt_tokens=prompt,
        completion_tokens=grpo.max_completion_length if grpo else 0,
        beta=grpo.beta if grpo else float(method_settings.get("beta", 0.0)),
    )
    levers = method_levers(method, training_mode, args.gradient_checkpointing, bitsandbytes=find_spec("bitsandbytes") is not None)
    return choose_strategy(shape, work, free_bytes, gpus, strategy, levers, method)


def _planned_memory(plan: FitPlan) -> MemoryEstimate:
    mib = 1024 * 1024
    need = plan.need
    return MemoryEstimate(
        need.weights / mib,
        need.trained_state / mib,
        (need.activations + need.loss_tile) / mib,
        need.reference / mib,
        need.generation / mib,
        overhead_mib=(need.total - need.tensors) / mib,
    )


def _optimizer_steps(args: TrainingSettings, train_rows: int, method: str, method_settings: dict) -> int:
    if args.max_steps > 0:
        return args.max_steps
    rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if method == "grpo":  # a batch counts completions: each prompt row brings num_generations of them
        rows_per_step = max(1, rows_per_step // resolve(GrpoSettings, method_settings).num_generations)
    return max(1, math.ceil(train_rows * args.num_train_epochs / rows_per_step))
