"""What SDPA's first call of a shape costs, per kernel, for the graphed sampler's prefill parts and decode steps.

cuDNN's attention builds an execution plan for each new shape (and, on a machine's first run, compiles kernels the
driver then caches on disk); the memory-efficient kernel has nothing to plan. Each case runs in a fresh process after
one unrelated cuDNN call (library set-up is not counted): the first call of every shape, the same calls again, and
for decode shapes one call replayed from a CUDA graph (what the sampler's decode steps do).

Cases: ``prefill-*``: 18 parts of 30-120 rows x 64-210 query tokens over a 384-slot cache, the keys and values repeated
per query head (``rep``, what transformers does when there is a mask) or grouped (``gqa``); ``decode-*``: 512 rows x one
token over 384 and 320 slots, grouped (``gqa``, ``trainer.inference.decode_attention``) or with each group's query
heads folded into the query length (``packed``, transformers' own). The 3B shape's 24/8 heads of 128, bf16.

    python bench/sdpa_first_calls.py                          # every case (CUDA)
    python bench/sdpa_first_calls.py --cases prefill-cudnn-rep,prefill-efficient-rep
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Callable

CASES = (
    "prefill-cudnn-rep",
    "prefill-efficient-rep",
    "prefill-cudnn-gqa",
    "decode-cudnn-gqa",
    "decode-cudnn-packed",
    "decode-efficient-packed",
)
HEADS, KV_HEADS, DIM, SLOTS = 24, 8, 128, 384


def timed_ms(function: Callable[[], object]) -> float:
    import torch

    torch.cuda.synchronize()
    began = time.perf_counter()
    function()
    torch.cuda.synchronize()
    return (time.perf_counter() - began) * 1e3


def attention_call(rows: int, queries: int, slots: int, layout: str) -> Callable[[], object]:
    import torch
    import torch.nn.functional as F

    query = torch.randn(rows, HEADS, queries, DIM, device="cuda", dtype=torch.bfloat16)
    key = torch.randn(rows, KV_HEADS, slots, DIM, device="cuda", dtype=torch.bfloat16)
    value = torch.randn_like(key)
    mask = torch.rand(rows, 1, queries, slots, device="cuda") < 0.7
    mask[..., 0] = True
    groups = HEADS // KV_HEADS
    if layout == "packed":
        packed = query.reshape(rows, KV_HEADS, groups, DIM)
        return lambda: F.scaled_dot_product_attention(packed, key, value, attn_mask=mask)
    if layout == "gqa":
        return lambda: F.scaled_dot_product_attention(query, key, value, attn_mask=mask, enable_gqa=True)
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    return lambda: F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def run_case(case: str) -> str:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    part, kernel, layout = case.split("-")
    warm = torch.randn(4, 8, 100, 64, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):  # cuDNN's own set-up, once per process: not what is measured
        torch.nn.functional.scaled_dot_product_attention(
            warm, warm, warm, attn_mask=torch.ones(4, 1, 100, 100, device="cuda", dtype=torch.bool)
        )
    torch.cuda.synchronize()
    if part == "prefill":
        rng = random.Random(0)
        shapes = [(rng.randint(30, 120), rng.randint(64, 210), SLOTS) for _ in range(18)]
    else:
        shapes = [(512, 1, SLOTS), (512, 1, 320)]
    calls = [attention_call(rows, queries, slots, layout) for rows, queries, slots in shapes]
    backend = SDPBackend.CUDNN_ATTENTION if kernel == "cudnn" else SDPBackend.EFFICIENT_ATTENTION
    with sdpa_kernel([backend]):
        first = [timed_ms(call) for call in calls]
        again = [timed_ms(call) for call in calls]
        replayed = ""
        if part == "decode":
            graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                calls[0]()
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                calls[0]()
            replayed = f", graphed {timed_ms(lambda: [graph.replay() for _ in range(20)]) / 20 * 1e3:.0f} us a call"
    return (
        f"{case:24} first calls {sum(first):8.1f} ms over {len(calls)} shapes (max {max(first):6.1f}), again {sum(again):6.2f} ms{replayed}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args()
    if args.case:
        print(run_case(args.case), flush=True)
        return
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
        done = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True)
        print(done.stdout.strip() or f"{case}: failed\n{done.stderr[-800:]}", flush=True)


if __name__ == "__main__":
    main()
