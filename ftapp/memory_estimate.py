"""A first-order peak-memory estimate for a training run, from the model's config alone.

Used by FT-006 before any GPU time is spent. It counts weights at their precision, LoRA
parameters, AdamW state (fp32 m and v + fp32 master copy for trained weights), gradients and
a per-token activation allowance; it aims to be within tens of percent, not exact.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_WEIGHT = {"full": 2.0, "lora": 2.0, "qlora": 0.56}  # bf16; nf4 + double-quant constants
LORA_FRACTION = 0.01  # LoRA r=16 on all linear layers trains ~1% of a decoder's parameters
ADAM_BYTES_PER_TRAINED = 16  # fp32 master + m + v + gradient
ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER = 34  # without checkpointing, bf16, per hidden unit


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float
    trainable_mib: float
    activations_mib: float

    @property
    def total_mib(self) -> float:
        # 10% for the CUDA context, allocator fragmentation and temporary buffers.
        return 1.1 * (self.weights_mib + self.trainable_mib + self.activations_mib)


def estimate_training_memory(num_parameters: int, training_mode: str, tokens_per_micro_batch: int,
                             hidden_size: int, num_layers: int) -> MemoryEstimate:
    mib = 1024 * 1024
    weights = num_parameters * BYTES_PER_WEIGHT[training_mode]
    trained = num_parameters if training_mode == "full" else num_parameters * LORA_FRACTION
    activations = tokens_per_micro_batch * hidden_size * num_layers * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER
    return MemoryEstimate(weights / mib, trained * ADAM_BYTES_PER_TRAINED / mib, activations / mib)
