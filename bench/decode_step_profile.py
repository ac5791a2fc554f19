"""What one graphed decode step costs: seconds of an answer (first call, capture included; second call; its prefill)
and milliseconds per decode step, for the evaluation shapes (Llama-3.2-3B, 8 LoRA adapters: 64 rows per adapter in
blocks, ``eval-blocks:N`` for N rows per adapter, or 128 rows of one adapter folded in, ``eval-turn``) and GRPO's
(Llama-3.2-1B, one adapter folded in, 64 completions of 64 tokens), per variant of the model: ``plain`` (as the
sampler runs it: PyTorch's fused RMSNorm kernel on CUDA), ``hf-norms`` (transformers' own RMSNorm instead), ``liger``
(Liger's fused RMSNorm, rotary embedding and SwiGLU) and ``compiled`` (``torch.compile`` on each decoder layer).

    python bench/decode_step_profile.py --cases eval-blocks,eval-blocks:128,eval-turn,grpo --variants plain,compiled,liger
    python bench/decode_step_profile.py --cases grpo --variants liger --kernels 30   # + the costliest GPU kernels
    python bench/decode_step_profile.py --cases eval-blocks --variants plain --without-cudnn   # another SDPA kernel
    python bench/decode_step_profile.py --cases eval-blocks,grpo --variants hf-norms,plain    # the fused RMSNorm's share
    python bench/decode_step_profile.py --smoke         # tiny shapes on the CPU (checks the script, not speed)

Random weights and prompts: speed does not depend on them. The variants patch the models in place, in the order given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
import unittest.mock
from collections.abc import Iterator
from typing import Any

import torch
from model_shapes import LLAMA_32_1B, LLAMA_32_3B, TINY

from trainer.inference import graphed_sampler
from trainer.inference.generation import GroupedLora
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling

SHAPES: dict[str, dict[str, Any]] = {
    "3b": LLAMA_32_3B,
    "1b": LLAMA_32_1B,
    "tiny": {**TINY, "vocab_size": 1000, "tie_word_embeddings": True},
}


class Blocks:
    def __init__(self, model, names: list[str]):
        self.model, self.names, self.count = model, names, len(names)
        self.grouped = GroupedLora.build(model, names)

    def prefill(self, block: int):
        self.model.set_adapter(self.names[block])
        return contextlib.nullcontext()

    def decode(self):
        return self.grouped.active()


def build(shape: str, adapters: int, device: str):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape], pad_token_id=0, bos_token_id=1, eos_token_id=2)).to(dtype)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(model, config, adapter_name="a0")
    for number in range(1, adapters):
        model.add_adapter(f"a{number}", config)
    for module in model.modules():  # PEFT keeps bf16 models' adapters in float32 unless told otherwise
        if hasattr(module, "lora_A"):
            module.to(dtype)
    model.eval()
    return model


def rows(count: int, lengths: tuple[int, int], vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(*lengths))] for _ in range(count)]


@contextlib.contextmanager
def timed(device: str, into: dict[str, float], name: str) -> Iterator[None]:
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    yield
    if device == "cuda":
        torch.cuda.synchronize()
    into[name] = into.get(name, 0.0) + time.perf_counter() - began


def measure(sampler: GraphedSampler, prompts, answers, new_tokens: int, blocks, device: str) -> dict[str, Any]:
    """Seconds of a first answer() (capture included), of a second one and of its prefill; ms per decode step."""
    out: dict[str, Any] = {}
    original = sampler._prefill

    def prefill(*args, **kwargs):
        with timed(device, out, "prefill_s"):
            return original(*args, **kwargs)

    sampler._prefill = prefill
    with timed(device, out, "first_s"):
        sampler.answer(prompts, answers, new_tokens, min_new_tokens=new_tokens, blocks=blocks)
    out.pop("prefill_s")
    with timed(device, out, "second_s"):
        sampler.answer(prompts, answers, new_tokens, min_new_tokens=new_tokens, blocks=blocks)
    sampler._prefill = original
    out["decode_ms_per_step"] = (out["second_s"] - out["prefill_s"]) / max(1, new_tokens - 1) * 1000
    return out


def kernel_table(sampler: GraphedSampler, prompts, answers, new_tokens: int, blocks, top: int) -> list[dict[str, Any]]:
    """The GPU kernels of one eager answer (the decode steps the graph holds, run one by one, and the prefill), by
    total time: which kernels a decode step spends its time in. Prints the table; returns its rows."""
    from torch.profiler import ProfilerActivity, profile

    sampler._shapes.clear()  # a fresh shape: eager steps, not the captured graph
    sampler.use_graphs = False
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        if answers is None:
            sampler.generate(prompts, new_tokens, min_new_tokens=new_tokens)
        else:
            sampler.answer(prompts, answers, new_tokens, min_new_tokens=new_tokens, blocks=blocks)
        torch.cuda.synchronize()
    sampler.use_graphs = True
    totals: dict[str, list[float]] = {}
    for event in trace.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = totals.setdefault(event.name, [0, 0.0])
            entry[0] += 1
            entry[1] += event.device_time_total if hasattr(event, "device_time_total") else event.cuda_time_total
    table = sorted(({"kernel": k, "count": c, "ms": t / 1000} for k, (c, t) in totals.items()), key=lambda r: -r["ms"])
    everything = sum(r["ms"] for r in table)
    print(f"kernels of one eager answer: {sum(r['count'] for r in table)} launches, {everything:.1f} ms on the GPU")
    for row in table[:top]:
        print(f"{row['ms']:9.2f} ms {row['count']:7d} x {1000 * row['ms'] / row['count']:8.1f} us  {row['kernel'][:110]}")
    return table[:top]


def apply_liger(model) -> None:
    from liger_kernel.transformers import apply_liger_kernel_to_llama

    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=False, model=model.get_base_model())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--cases", default="eval-blocks,eval-turn,grpo")
    parser.add_argument("--variants", default="plain,liger")
    parser.add_argument("--json", default=None)
    parser.add_argument("--kernels", type=int, default=0, help="also print the N costliest GPU kernels of an eager answer")
    parser.add_argument("--without-cudnn", action="store_true", help="SDPA without cuDNN's attention (its next choice, memory-efficient)")
    args = parser.parse_args()
    if args.without_cudnn:
        torch.backends.cuda.enable_cudnn_sdp(False)
    device = "cpu" if args.smoke else "cuda"
    results: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for variant in args.variants.split(","):
        for case in args.cases.split(","):
            shape = "tiny" if args.smoke else ("1b" if case == "grpo" else "3b")
            adapters = 1 if case == "grpo" else (2 if args.smoke else 8)
            key = f"{shape}-{adapters}"
            if key not in models:
                models[key] = build(shape, adapters, device)
            model = models[key]
            if variant == "liger" and not getattr(model, "_liger", False):
                apply_liger(model)
                model._liger = True
            if variant == "compiled" and not getattr(model, "_compiled", False):
                for layer in model.get_base_model().model.layers:
                    layer.compile(dynamic=False)
                model._compiled = True
            vocab = SHAPES[shape]["vocab_size"]
            if case.startswith("eval-blocks"):
                per_block = 8 if args.smoke else int(case.partition(":")[2] or 64)
                base = rows(per_block, (16, 40) if args.smoke else (64, 200), vocab)
                prompts = [p for _ in range(adapters) for p in base]
                answers = [[5, 6, 7]] * len(prompts)
                new_tokens = 8 if args.smoke else 128
                blocks = Blocks(model, [f"a{n}" for n in range(adapters)])
                sampler = GraphedSampler(
                    model.get_base_model(), eos_token_ids=[2], pad_token_id=0, sampling=Sampling(0.0), merge_adapters=False
                )
            elif case == "eval-turn":
                prompts = rows(8 if args.smoke else 128, (16, 40) if args.smoke else (64, 200), vocab)
                answers = [[5, 6, 7]] * len(prompts)
                new_tokens = 8 if args.smoke else 128
                blocks = None
                model.set_adapter("a0")
                sampler = GraphedSampler(
                    model.get_base_model(), eos_token_ids=[2], pad_token_id=0, sampling=Sampling(0.0), merge_memory_share=0.5
                )
            else:  # GRPO: 8 prompts x 8 generations of 64 tokens, sampled at temperature 1
                prompts = [p for p in rows(8, (10, 24), vocab) for _ in range(8)]
                answers = None
                new_tokens = 8 if args.smoke else 64
                blocks = None
                model.set_adapter("a0")
                sampler = GraphedSampler(model.get_base_model(), eos_token_ids=[2], pad_token_id=0, sampling=Sampling(1.0))
            norms = (
                unittest.mock.patch.object(graphed_sampler, "fused_norms", lambda model, device: contextlib.nullcontext(0))
                if variant == "hf-norms"
                else contextlib.nullcontext()
            )
            with norms:
                if answers is None:
                    out: dict[str, Any] = {}
                    with timed(device, out, "first_s"):
                        sampler.generate(prompts, new_tokens, min_new_tokens=new_tokens)
                    with timed(device, out, "second_s"):
                        sampler.generate(prompts, new_tokens, min_new_tokens=new_tokens)
                else:
                    out = measure(sampler, prompts, answers, new_tokens, blocks, device)
            if answers is None:
                out["decode_ms_per_step"] = out["second_s"] / new_tokens * 1000  # prefill included: short prompts
            out["rows"] = len(prompts)
            if args.kernels and device == "cuda":
                with norms:
                    out["kernels"] = kernel_table(sampler, prompts, answers, new_tokens, blocks, args.kernels)
            results[f"{case}/{variant}"] = out
            print(f"{case}/{variant}: " + json.dumps(out), flush=True)
            del sampler
    print("\ncase/variant               rows  first s  second s  prefill s  decode ms/step")
    for name, out in results.items():
        print(
            f"{name:26} {out['rows']:5d} {out['first_s']:8.2f} {out['second_s']:9.2f} {out.get('prefill_s', 0):10.2f} "
            f"{out['decode_ms_per_step']:15.2f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    main()
