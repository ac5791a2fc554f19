"""A random two-layer Llama with grouped key/value heads, for the sampler's tests on the CPU."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

EOS = 2


def tiny_llama(**overrides: object) -> LlamaForCausalLM:
    """Seeded, so every call gives the same weights; ``overrides`` go to its ``LlamaConfig``."""
    torch.manual_seed(0)
    settings: dict[str, object] = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=EOS,
        pad_token_id=0,
    )
    return LlamaForCausalLM(LlamaConfig(**{**settings, **overrides})).eval()
