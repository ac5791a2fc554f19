"""Padding-free attention through PyTorch's own flash kernel (``torch.nn.attention.varlen``), no compile.

flash-attn has no wheel for most GPU hosts, and flex_attention compiles Triton kernels on the first
steps of every new shape (minutes on a cold cache, before the first loss point). PyTorch ships the
flash-attention kernels it uses for SDPA; ``varlen_attn`` exposes their variable-length form, which
is what a padding-free batch needs: the examples concatenated into one sequence, attention kept
inside each example by cumulative sequence offsets read from the position ids (they restart at 0
where an example starts, as TRL's padding-free collator writes them).

``register()`` adds it to transformers' attention functions as ``VARLEN`` ("torch_varlen"), with
flash-attention's mask function, so the model gets no 4-D mask. Decoding steps with a KV cache (one
sequence) go to SDPA; a padded batch (a 2-D padding mask) is refused: pad-free data only.
"""

from __future__ import annotations

import inspect
from importlib.util import find_spec
from typing import Any

import torch

from trainer.padding_free import VARLEN_ATTENTION as VARLEN


def is_available() -> bool:
    return find_spec("torch.nn.attention.varlen") is not None and torch.cuda.is_available()


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, flash_attention_mask)


class _Boundaries:
    """Sequence offsets of the last position-id tensor seen: every layer of one forward gets the
    same tensor, and reading the longest example's length (``.item()``) waits for the GPU, so it is
    done once per forward instead of once per layer."""

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None
        self.value: tuple[torch.Tensor, int] | None = None

    def of(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.key is not position_ids or self.value is None:
            flat = position_ids.reshape(-1)
            starts = torch.nonzero(flat == 0).reshape(-1)
            if starts.numel() == 0 or int(starts[0]) != 0:  # a batch must start an example
                starts = torch.cat([starts.new_zeros(1), starts])
            end = torch.tensor([flat.numel()], device=flat.device, dtype=starts.dtype)
            offsets = torch.cat([starts, end]).to(torch.int32)
            self.key, self.value = position_ids, (offsets, int(offsets.diff().max()))
        return self.value


_BOUNDARIES = _Boundaries()
_call_signature: dict[str, bool] = {}


def _supports(name: str) -> bool:
    if name not in _call_signature:
        from torch.nn.attention.varlen import varlen_attn

        _call_signature[name] = name in inspect.signature(varlen_attn).parameters
    return _call_signature[name]


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function interface: q/k/v as (batch, heads, seq, head_dim); returns
    (batch, seq, heads, head_dim). Rows of an unpadded batch of several rows are separate examples."""
    from torch.nn.attention.varlen import varlen_attn

    if attention_mask is None and key.shape[2] != query.shape[2]:
        # Generating from a KV cache (samples at the end of a run): SDPA's kernels are made for it.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    if attention_mask is not None:
        raise ValueError(
            f"{VARLEN} attention runs padding-free batches only; this batch is padded (use sdpa for padded batches and generation)"
        )
    if dropout:
        raise ValueError(f"{VARLEN} attention has no dropout")
    batch, heads, length, head_dim = query.shape
    position_ids = kwargs.get("position_ids")
    if batch == 1 and position_ids is not None:
        offsets, longest = _BOUNDARIES.of(position_ids)
    else:
        offsets = torch.arange(0, (batch + 1) * length, length, device=query.device, dtype=torch.int32)
        longest = length
    q = query.transpose(1, 2).reshape(batch * length, heads, head_dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], head_dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], head_dim)
    if k.shape[1] != heads and not _supports("enable_gqa"):
        # Older releases want as many key/value heads as query heads.
        k = k.repeat_interleave(heads // k.shape[1], dim=1)
        v = v.repeat_interleave(heads // v.shape[1], dim=1)
    causal = module.is_causal if is_causal is None else is_causal
    options: dict[str, Any] = {"scale": scaling}
    if _supports("window_size"):
        left = sliding_window - 1 if sliding_window else -1
        options["window_size"] = (left, 0) if causal else (left, -1)
    else:
        if sliding_window:
            raise ValueError(f"this torch's {VARLEN} attention has no sliding window")
        options["is_causal"] = causal
    if k.shape[1] != heads:
        options["enable_gqa"] = True
    out = varlen_attn(q, k, v, offsets, offsets, longest, longest, **options)
    return out.reshape(batch, length, heads, head_dim), None
