"""Eager ``generate()`` per SDPA kernel choice: does cuDNN's attention cost what it saves where shapes change every step?

Each eager decode step attends over one more cache slot than the last, so every step is a new shape; cuDNN's
attention builds (and caches) an execution plan per shape. The evaluation bench measured the seed's pipeline at 21.5
tokens/s with PyTorch's default kernels and 39.6 with cuDNN's left out (two processes, one H200). This times
``generate`` on a Llama-3.2-1B shape with a LoRA adapter (PEFT, as TRL's GRPO samples with its ``generate`` engine)
both ways, in one process, alternating, after a warm-up of each.

Measured (H200, torch 2.11): once warm, no difference for GRPO's batch (64 x 64: 2.19 vs 2.18 s) and cuDNN faster for
the pipeline's (2 x 128: 5.23 vs 5.83 s). So cuDNN's cost is planning each shape the first time it meets it, which a
short measurement (the seed pipeline's, extrapolated) and a run's first steps pay, not its steady state.

    python bench/generate_sdpa.py                  # CUDA: 64 rows x 64 tokens (GRPO's batch) and 2 rows x 128
    python bench/generate_sdpa.py --smoke          # the tiny shape on the CPU (no cuDNN: both the same)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time

import torch
from model_shapes import LLAMA_32_1B, TINY
from torch.nn.attention import SDPBackend, sdpa_kernel

WITHOUT_CUDNN = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def build(config: dict, device: str):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**config, pad_token_id=0, bos_token_id=1, eos_token_id=2)).to(dtype)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, lora).eval()


def batch(rows: int, lengths: tuple[int, int], vocab: int, device: str) -> dict[str, torch.Tensor]:
    """Left-padded prompts of random lengths (a padding mask: what makes SDPA take a masked kernel)."""
    rng = random.Random(0)
    prompts = [[rng.randrange(3, vocab) for _ in range(rng.randint(*lengths))] for _ in range(rows)]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return {"input_ids": ids, "attention_mask": mask}


def timed_generate(model, inputs, new_tokens: int, device: str, kernels) -> float:
    with sdpa_kernel(kernels) if kernels else contextlib.nullcontext(), torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    config = {**LLAMA_32_1B, **TINY} if args.smoke else LLAMA_32_1B
    model = build(config, device)
    cases = (
        [("grpo", 8, 8, (10, 24)), ("pipeline", 2, 8, (64, 200))]
        if args.smoke
        else [("grpo", 64, 64, (10, 24)), ("pipeline", 2, 128, (64, 200))]
    )
    results = {}
    for name, rows, new_tokens, lengths in cases:
        inputs = batch(rows, lengths, config["vocab_size"], device)
        seconds: dict[str, list[float]] = {"default": [], "without_cudnn": []}
        for kernels in (None, WITHOUT_CUDNN):  # warm-up: each kernel set's first shapes
            timed_generate(model, inputs, new_tokens, device, kernels)
        for _ in range(args.repeats):
            seconds["default"].append(timed_generate(model, inputs, new_tokens, device, None))
            seconds["without_cudnn"].append(timed_generate(model, inputs, new_tokens, device, WITHOUT_CUDNN))
        best = {k: min(v) for k, v in seconds.items()}
        results[name] = {
            "rows": rows,
            "new_tokens": new_tokens,
            **{f"{k}_s": round(v, 3) for k, v in best.items()},
            **{f"{k}_tokens_per_s": round(rows * new_tokens / v, 1) for k, v in best.items()},
            "speedup_without_cudnn": round(best["default"] / best["without_cudnn"], 2),
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
