"""A first-order peak-memory estimate for a training run, from the model's config alone.

Used by FT-006 before any GPU time is spent. It counts weights at their precision, LoRA
parameters, AdamW state (fp32 m and v + fp32 master copy for trained weights), gradients and
a per-token activation allowance, plus what DPO and GRPO add (a reference model's weights, the
generation's KV cache); it aims to be within tens of percent, not exact.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_WEIGHT = {"full": 2.0, "lora": 2.0, "qlora": 0.56}  # bf16; nf4 + double-quant constants
LORA_FRACTION = 0.01  # LoRA r=16 on all linear layers trains ~1% of a decoder's parameters
ADAM_BYTES_PER_TRAINED = 16  # fp32 master + m + v + gradient
ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER = 34  # without checkpointing, bf16, per hidden unit


KV_BYTES_PER_TOKEN_PER_KV_UNIT = 4  # a key and a value per layer, bf16


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float
    trainable_mib: float
    activations_mib: float
    reference_mib: float = 0.0  # a frozen copy of the weights for the reference model (full fine-tunes only)
    generation_mib: float = 0.0  # GRPO: the KV cache of the batch being generated
    overhead_mib: float | None = None  # CUDA context and allocator slack (None: 10% of the rest)

    @property
    def total_mib(self) -> float:
        tensors = self.weights_mib + self.trainable_mib + self.activations_mib + self.reference_mib + self.generation_mib
        # 10% for the CUDA context, allocator fragmentation and temporary buffers, unless the plan counted them.
        return tensors + (0.1 * tensors if self.overhead_mib is None else self.overhead_mib)


def estimate_training_memory(
    num_parameters: int,
    training_mode: str,
    tokens_per_micro_batch: int,
    hidden_size: int,
    num_layers: int,
    reference_model: bool = False,
    generation_tokens: int = 0,
    kv_size: int = 0,
) -> MemoryEstimate:
    """``tokens_per_micro_batch`` counts every sequence trained at once (DPO: chosen and rejected);
    ``reference_model``: the method compares with a frozen reference, which needs no activations kept
    and, for LoRA, no weights either (it is the base with the adapter switched off);
    ``generation_tokens``: tokens whose keys and values are cached while generating (``kv_size``
    per layer, the hidden size when not given)."""
    mib = 1024 * 1024
    weights = num_parameters * BYTES_PER_WEIGHT[training_mode]
    trained = num_parameters if training_mode == "full" else num_parameters * LORA_FRACTION
    activations = tokens_per_micro_batch * hidden_size * num_layers * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER
    reference = weights if reference_model and training_mode == "full" else 0.0
    kv_cache = generation_tokens * num_layers * (kv_size or hidden_size) * KV_BYTES_PER_TOKEN_PER_KV_UNIT
    return MemoryEstimate(weights / mib, trained * ADAM_BYTES_PER_TRAINED / mib, activations / mib, reference / mib, kv_cache / mib)
