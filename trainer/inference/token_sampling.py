"""The next token of each row from its logits, with no host sync (it runs inside a captured CUDA graph).

Sampling is the Gumbel-max trick (``argmax(logits / T + Gumbel noise)`` draws from ``softmax(logits / T)``), after
top-k and top-p filtering when asked; ``torch.rand`` inside a graph draws new numbers at each replay. A temperature
of 0 or below is greedy."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off


def sample_tokens(logits: torch.Tensor, sampling: Sampling, eos: torch.Tensor, eos_blocked: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of ``logits``; ``eos_blocked`` (one boolean, on the device): none of the ``eos`` ids yet
    (``min_new_tokens``)."""
    logits = logits.float()  # the caller's own tensor when it is float32 already: nothing below writes into it
    if eos_blocked is not None:
        logits = logits.index_copy(1, eos, logits.index_select(1, eos).masked_fill(eos_blocked, float("-inf")))
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = (cumulative - ordered.softmax(-1)) > sampling.top_p  # keep the token that crosses top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    noise = torch.rand_like(logits).clamp_(min=1e-20)  # [0, 1): log(-log(u)) stays finite
    return (logits - torch.log(-torch.log(noise))).argmax(-1)
