"""Before any GPU time is spent: will the run fit, and roughly how long will it take? (seeds 000, 003)

Memory comes from ``memory_estimate`` (weights, LoRA/optimizer state, activations, and for DPO
and GRPO a reference model and the generation's KV cache). Time comes from the number of training
tokens and a per-device throughput table: peak bf16 TFLOP/s at an assumed 40% utilisation, with
LoRA costing ~4N FLOPs per token (forward + input gradients), full fine-tuning ~6N, and each extra
forward pass (DPO's reference, GRPO's generation and KL reference) ~2N. DPO trains two sequences
per row (chosen, rejected); GRPO num_generations per prompt. It is an order-of-magnitude estimate
shown to the user, not a promise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ftapp.datasets.preference_rows import sequence_chars
from ftapp.prompts.config_schemas import TrainingArguments, resolve
from ftapp.prompts.templates import render
from ftapp.runs.devices import DeviceChoice
from ftapp.runs.machine import Machine
from ftapp.runs.memory import MemoryEstimate, estimate_training_memory

PEAK_BF16_TFLOPS = {"H200": 790, "H100": 790, "A100": 312, "L40S": 362, "L40": 181, "4090": 165, "A6000": 155,
                    "A10": 125, "L4": 121, "V100": 125, "T4": 65}
CPU_TFLOPS = 0.05  # a few cores of fp32 matmul in practice
UTILISATION = 0.4
CHARS_PER_TOKEN = 4.0
# Starting the trainer process (torch/transformers/TRL imports, loading the model) before the first step.
STARTUP_S = 15.0


@dataclass(frozen=True)
class Preflight:
    device: str
    memory: MemoryEstimate
    available_mib: float
    train_tokens: int
    tokens_per_s: float

    @property
    def fits(self) -> bool:
        return self.memory.total_mib <= self.available_mib

    @property
    def seconds(self) -> float:
        return STARTUP_S + self.train_tokens / self.tokens_per_s if self.tokens_per_s > 0 else float("inf")

    def summary(self) -> str:
        minutes = self.seconds / 60
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"peak memory ~{self.memory.total_mib / 1024:.1f} GiB of {self.available_mib / 1024:.1f} GiB "
                f"on {self.device} ({verdict}); ~{self.train_tokens:,} training tokens at ~{self.tokens_per_s:,.0f} "
                f"tokens/s ≈ {minutes:.1f} min")


def _peak_tflops(devices: DeviceChoice, machine: Machine) -> float:
    if devices.kind == "cpu":
        return CPU_TFLOPS
    name = machine.gpu(devices.gpu_ids[0]).name if machine.gpu(devices.gpu_ids[0]) else ""
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


def workload(method: str, args: TrainingArguments, sample_rows: list[dict], template: str | None, input_template: str | None,
             method_settings: dict) -> Workload:
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
        grpo = resolve("grpo_settings", method_settings)
        per_sequence = min(average_tokens(sample_rows, input_template or template), args.max_length) + grpo.max_completion_length
        generation = int(batch * args.gradient_accumulation_steps * per_sequence)
        return Workload(int(batch * per_sequence), grpo.num_generations * per_sequence, generation,
                        reference_model=grpo.beta > 0, extra_passes=1 + (grpo.beta > 0))
    per_example = min(average_tokens(sample_rows, template), args.max_length)
    return Workload(args.max_tokens_per_batch or int(batch * per_example), per_example)


def estimate(*, num_parameters: int, hidden_size: int, num_layers: int, training_mode: str,
             training: dict, train_rows: int, sample_rows: list[dict], template: str | None,
             devices: DeviceChoice, machine: Machine, method: str = "sft", method_settings: dict | None = None,
             input_template: str | None = None, kv_units: int = 0) -> Preflight:
    args = resolve("training_arguments", training)
    load = workload(method, args, sample_rows, template, input_template, method_settings or {})
    memory = estimate_training_memory(num_parameters, training_mode, load.micro_batch_tokens, hidden_size, num_layers,
                                      load.reference_model, load.generation_tokens, kv_units)
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
        available = min(machine.gpu(i).memory_free_mib for i in devices.gpu_ids)
    return Preflight(devices.label, memory, float(available), tokens, tokens_per_s)
