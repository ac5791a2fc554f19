"""Attention for the sampler's one-token decode steps: SDPA's own grouped-query attention over the masked static cache.

For one query token with grouped key/value heads and a mask, transformers (>= 5.23) folds each group's query heads
into the query length and runs SDPA on the key/value heads (``pack_gqa``); it leaves SDPA's ``enable_gqa`` to calls
without a mask, where no kernel falls back to the math path. Measured on an H200 with torch 2.11 and transformers
5.24: one layer's attention in a CUDA graph (bf16, a boolean mask over 55% of the slots, 512 rows of a 3B model's
24/8 heads over 384 slots) 198 us with ``enable_gqa`` against 322 us packed, where reading the keys and values once
takes 168 us; in the evaluation bench (8 adapters x 128 prompts x 128 tokens) decoding took 4.31-4.35 s instead of
5.24-5.25 s, three runs each in one process. GRPO's sampling (64 rows of a 1B model) took 0.168 s a step either way.
Prefill (several query tokens) keeps transformers' path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

DECODE_ATTENTION = "ftapp_decode_sdpa"
# Where enable_gqa with a mask was measured to run a fused kernel (cuDNN's, which PyTorch enables by default on Hopper
# only), not the math path that copies the keys and values per query head: transformers' reason to avoid it on CUDA.
MEASURED_TORCH = (2, 11)
MEASURED_GPU = 9  # compute capability major: H100/H200


def decode_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    plain = not kwargs.get("softcap") and kwargs.get("position_bias") is None and kwargs.get("s_aux") is None
    if query.shape[2] != 1 or getattr(module, "num_key_value_groups", 1) <= 1 or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout if module.training else 0.0,
        scale=scaling,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(DECODE_ATTENTION, decode_sdpa_attention)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def measured_on(device: torch.device) -> bool:
    """Whether this device and torch are where the decode attention was measured to be faster."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == MEASURED_GPU and _torch_version() >= MEASURED_TORCH


@contextlib.contextmanager
def decode_attention(model: PreTrainedModel, device: torch.device) -> Iterator[None]:
    """The model attending with ``decode_sdpa_attention`` inside the block, where it would use SDPA and ``device`` is
    ``measured_on``; otherwise as it is. A captured graph keeps the kernels chosen here."""
    config = model.config
    if config._attn_implementation != "sdpa" or not measured_on(device):
        yield
        return
    config._attn_implementation = DECODE_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
