"""RMSNorm through PyTorch's fused kernel for the sampler's forwards (prefill and decode steps).

transformers' Llama-family RMSNorm (Llama, Mistral, Qwen2, Qwen3 and the other models whose norm is a copy of it) runs
as some seven element-wise kernels: to float32, square, mean, rsqrt, scale, cast back, times the weight. PyTorch has
one fused CUDA kernel for ``F.rms_norm``; a 3B model has 57 norms in each forward. Measured on an H200 with torch 2.11
and transformers 5.24 (``FTAPP_MLFLOW=0 python bench/eval_throughput.py --compare-norms 3``: 8 adapters x 128 prompts x
128 tokens, three runs each way in one process, alternating): prefill 2.63-2.65 s instead of 3.04-3.12 s, decoding
3.91-3.94 s instead of 4.31-4.34 s, the whole evaluation 9.28-9.38 s instead of 10.17-10.95 s; reference
log-likelihoods moved by 0.04 on average (at most 0.27) of ~52.

The numbers differ by rounding only: transformers rounds the normalised value to bf16 and then multiplies by the
weight (a second rounding), the fused kernel multiplies in float32 and rounds once (a quarter of the values differ by
one bf16 step). Norms with another formula (Gemma's ``1 + weight``, Liger's kernels, anything whose ``forward`` is not
Llama's code) keep their own forward, as do norms whose weight has another dtype than their input (the output dtype
would change).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaRMSNorm

_LLAMA_FORWARD = LlamaRMSNorm.forward.__code__


def is_llama_norm(module: torch.nn.Module) -> bool:
    """Whether the module's class computes Llama's RMSNorm: its ``forward`` is the same code (transformers copies it
    into each model family's file under the family's name)."""
    code = getattr(type(module).forward, "__code__", None)
    return (
        code is not None
        and code.co_code == _LLAMA_FORWARD.co_code
        and code.co_consts == _LLAMA_FORWARD.co_consts
        and code.co_names == _LLAMA_FORWARD.co_names
    )


def fused_kernel_on(device: torch.device) -> bool:
    """Whether ``F.rms_norm`` runs as PyTorch's fused CUDA kernel there (a CUDA device, a torch with the operator)."""
    return device.type == "cuda" and hasattr(torch.ops.aten, "_fused_rms_norm")


def fused_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    if hidden_states.dtype != self.weight.dtype:
        return type(self).forward(self, hidden_states)
    return F.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)


@contextlib.contextmanager
def swapped_norms(model: torch.nn.Module) -> Iterator[int]:
    """Llama-family norms of ``model`` computed by ``F.rms_norm`` inside the block (yields how many); their own forward
    afterwards. A CUDA graph captured inside keeps the kernels it captured."""
    norms = [module for module in model.modules() if is_llama_norm(module) and "forward" not in vars(module)]
    for module in norms:
        module.forward = types.MethodType(fused_forward, module)
    try:
        yield len(norms)
    finally:
        for module in norms:
            del module.forward


@contextlib.contextmanager
def fused_norms(model: torch.nn.Module, device: torch.device) -> Iterator[int]:
    """``swapped_norms`` where the fused kernel exists (``fused_kernel_on``); elsewhere (the CPU, where it was not
    measured) the model as it is (yields 0)."""
    if not fused_kernel_on(device):
        yield 0
        return
    with swapped_norms(model) as count:
        yield count
