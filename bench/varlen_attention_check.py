"""Padding-free attention kernels on one GPU: trainer.varlen_attention (PyTorch's varlen flash kernel) against
SDPA run example by example (the reference) and compiled flex_attention, on a BFD-packed micro-batch of the
Llama-3.1-8B attention shape (32 query heads, 8 key/value heads, head_dim 128).

Checks outputs and gradients against the reference, then times forward + backward. Prints one JSON line.

    python bench/varlen_attention_check.py [--tokens 16384]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def lengths(total: int, seed: int = 0) -> list[int]:
    """Lognormal example lengths (median ~250, clipped to 2048) filling ``total`` tokens."""
    generator = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while sum(out) < total:
        out.append(int(min(2048, max(16, torch.empty(1).log_normal_(5.5, 0.8, generator=generator).item()))))
    out[-1] -= sum(out) - total
    return [n for n in out if n > 0]


def timed(step, repeats: int = 10) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=16384)
    args = parser.parse_args()
    import inspect

    from torch.nn.attention.varlen import varlen_attn

    from trainer.varlen_attention import varlen_attention_forward

    heads, kv_heads, dim = 32, 8, 128
    sizes = lengths(args.tokens)
    total = sum(sizes)
    position_ids = torch.cat([torch.arange(n) for n in sizes]).unsqueeze(0).cuda()
    torch.manual_seed(0)
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    class Module(torch.nn.Module):
        is_causal = True

    module = Module()

    def ours():
        out, _ = varlen_attention_forward(module, q, k, v, None, scaling=dim**-0.5, position_ids=position_ids)
        return out  # (1, total, heads, dim)

    def reference():
        parts, start = [], 0
        for n in sizes:
            sl = slice(start, start + n)
            parts.append(F.scaled_dot_product_attention(q[:, :, sl], k[:, :, sl], v[:, :, sl], is_causal=True, enable_gqa=True))
            start += n
        return torch.cat(parts, dim=2).transpose(1, 2)

    grad = torch.randn(1, total, heads, dim, device="cuda", dtype=torch.bfloat16)
    result: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(),
        "tokens": total,
        "examples": len(sizes),
        "varlen_params": list(inspect.signature(varlen_attn).parameters),
    }
    grads = {}
    for name, fn in (("varlen", ours), ("reference", reference)):
        q.grad = k.grad = v.grad = None
        out = fn()
        out.backward(grad)
        grads[name] = (out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float())
    diffs = [(a - b).abs().max().item() / max(b.abs().max().item(), 1e-6) for a, b in zip(grads["varlen"], grads["reference"])]
    result["max_rel_diff_out_dq_dk_dv"] = [round(d, 5) for d in diffs]
    result["matches_reference"] = all(d < 2e-2 for d in diffs)

    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    document = torch.repeat_interleave(torch.arange(len(sizes), device="cuda"), torch.tensor(sizes, device="cuda"))

    def causal_document(b, h, qi, ki):
        return (qi >= ki) & (document[qi] == document[ki])

    block_mask = create_block_mask(causal_document, 1, 1, total, total, device="cuda")
    flex = torch.compile(flex_attention)
    began = time.perf_counter()
    flex(q, k, v, block_mask=block_mask, enable_gqa=True).sum().backward()
    torch.cuda.synchronize()
    result["flex_first_call_s"] = round(time.perf_counter() - began, 1)

    def fwd_bwd(fn):
        def step():
            q.grad = k.grad = v.grad = None
            fn().backward(grad if fn is not flex_call else grad.transpose(1, 2))

        return step

    def flex_call():
        return flex(q, k, v, block_mask=block_mask, enable_gqa=True)

    ms = {"varlen": timed(fwd_bwd(ours)), "flex_compiled": timed(fwd_bwd(flex_call)), "sdpa_per_example": timed(fwd_bwd(reference), 3)}
    causal_flops = sum(n * n for n in sizes) * heads * dim * 2 * 2 * 3.5 / 2  # fwd 2 matmuls + bwd 2.5x, causal half
    result["fwd_bwd_ms"] = {k_: round(v_, 2) for k_, v_ in ms.items()}
    result["tflops"] = {k_: round(causal_flops / (v_ / 1e3) / 1e12, 1) for k_, v_ in ms.items()}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
