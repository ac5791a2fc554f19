"""SDPA kernels for the sampler's prefill: any but cuDNN's.

cuDNN's attention, which PyTorch tries first on Hopper GPUs, builds an execution plan the first time it meets a shape,
and a prefill meets many: its parts of rows differ in rows and in columns (``trainer.inference.graphed_sampler`` pads
each part to its own longest prompt), and a new evaluation process meets them all again. Measured on an H200 with
torch 2.11 (``python bench/sdpa_first_calls.py``, each case in a fresh process): 18 prefill parts of 30-120 rows x
64-210 query tokens over a 384-slot cache (bf16, the 3B shape's 24/8 heads, the keys and values repeated per query head
as transformers does with a mask): first calls 730 ms with cuDNN against 12 ms with the memory-efficient kernel,
repeated calls 6.0 against 10.3 ms. The evaluation bench's setup (8 adapters x 128 prompts x 128 tokens, 3B shape), one
evaluation per fresh process, alternating: 11.1-11.5 s against 11.9-12.7 s (prefill 3.4-3.6 against 3.9-5.4 s); a
second evaluation in the same process, where cuDNN's plans exist, is 0.15 s slower this way (prefill 2.8-2.9 against
2.7-2.8 s). A prefill's attention is a small share of its time (its matmuls are most of it), so
the plans cost more than the faster kernel saves. Decode steps keep cuDNN (``trainer.inference.decode_attention``):
one shape per captured graph, replayed a hundred times, where its kernel takes half the memory-efficient one's time
(200 against 388 us a call in a graph).
"""

from __future__ import annotations

import contextlib

from torch.nn.attention import SDPBackend, sdpa_kernel

PREFILL_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def prefill_attention() -> contextlib.AbstractContextManager[None]:
    """SDPA limited to ``PREFILL_BACKENDS`` inside the block."""
    return sdpa_kernel(PREFILL_BACKENDS)
