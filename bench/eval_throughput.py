"""Throughput of ftapp's batched multi-adapter evaluation against the seed's one-pipeline-per-adapter approach.

The issue's setup: 8 LoRA adapters x 128 prompts x 128 new tokens on a random-initialised
Llama-3.2-3B-shaped model. Both sides run in this one process on the same GPU:

* ftapp: an ``EvaluationSpec`` through ``trainer.evaluation.recipe.run_evaluation``, the code path the
  app uses (base loaded once, every adapter attached, every row answered by every adapter in one
  mixed-adapter ``generate`` call per batch, then scored), timed wall-clock as a whole.
* baseline (the seed): per adapter, load the model, wrap it with the adapter and run a transformers
  ``text-generation`` pipeline with ``batch_size=2``. Running all of it would take the better part of an
  hour, so it runs on a subsample (a few prompts of one or two adapters) and is extrapolated:
  ``adapters * (load time + seconds per prompt * prompts)``.

``min_new_tokens`` forces exactly ``--new-tokens`` tokens on both sides: random weights emit EOS at random.

    FTAPP_MLFLOW=0 python bench/eval_throughput.py                      # the issue's run (CUDA)
    python bench/eval_throughput.py --smoke                              # tiny shapes on the CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

LLAMA_32_3B = dict(
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=24,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    max_position_embeddings=131072,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
    rope_parameters={
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
)
TINY = {
    **LLAMA_32_3B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}


class Recorder:
    """An event sink that keeps what the bench needs: when each event came and how many tokens were generated."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.events: list[tuple[float, str]] = []
        self.generated_tokens = 0
        self.rows = 0
        self.batch_seconds: list[float] = []

    def emit(self, kind: str, /, **data: Any) -> None:
        self.events.append((time.perf_counter() - self.started, kind))
        if kind == "sample":
            self.rows += len(data["rows"])
            self.generated_tokens += sum(row["new_tokens"] for row in data["rows"])
            self.batch_seconds.append(data["rows"][0]["latency_s"])  # every row of a batch carries its generate() time


def build_model(config: dict[str, Any], tokenizer, out: Path, device: str) -> Path:
    """Random weights in the given shape, built directly on ``device`` in the dtype the evaluation loads."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**config, **ids, dtype=dtype)).to(dtype)
    model.generation_config = GenerationConfig(**ids, do_sample=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_adapters(model_dir: Path, count: int, out: Path, device: str) -> list[Path]:
    """``count`` LoRA adapters (r=16, all linear layers) with random B matrices, so each one changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map={"": device})
    paths = []
    for number in range(count):
        torch.manual_seed(1000 + number)
        # init_lora_weights=False: B is random too (PEFT's default zero B would make every adapter the base model).
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        paths.append(out / f"adapter{number}")
        peft_model.save_pretrained(paths[-1])
        model = peft_model.unload()  # take the LoRA layers out again, unmerged
    del model
    return paths


def write_dataset(tokenizer, count: int, path: Path, lengths: tuple[int, int]) -> None:
    """``count`` support requests padded with demo-corpus sentences to between ``lengths`` tokens."""
    from trainer.demo.corpus import demo_dataset, pretraining_texts

    rng = random.Random(0)
    sentences = pretraining_texts(0)
    rows = []
    for row in demo_dataset(0)[:count]:
        target, text = rng.randint(*lengths), row["request"]
        while len(tokenizer(text)["input_ids"]) < target:
            text = rng.choice(sentences) + " " + text
        rows.append({"request": text, "intent": row["intent"]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def run_ours(model_dir: Path, adapters: list[Path], dataset: Path, work: Path, args) -> dict[str, Any]:
    """One ``run_evaluation`` over every adapter and prompt, timed as a whole (loading and scoring included)."""
    from trainer.demo.corpus import demo_prompt
    from trainer.evaluation.recipe import run_evaluation
    from trainer.protocol import DataSource, EvalCombination, EvaluationSpec, ModelSource

    prompt = demo_prompt()
    model = ModelSource(str(model_dir))
    combinations = [EvalCombination(1, "base", model)] if args.with_base else []
    combinations += [EvalCombination(len(combinations) + 1, path.name, model, str(path)) for path in adapters]
    spec = EvaluationSpec(
        run_id="bench",
        run_dir=str(work / "eval-run"),
        combinations=tuple(combinations),
        data=DataSource(
            "project_jsonl", str(dataset), input_template=prompt["input_template"], completion_template=prompt["completion_template"]
        ),
        row_indices=tuple(range(args.prompts)),
        rows_from="bench prompts",
        generation={"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False},
        batch_size=args.batch_size,
        device=args.device,
    )
    events = Recorder()
    run_evaluation(spec, events)
    wall = time.perf_counter() - events.started
    generate = sum(events.batch_seconds)
    # The rest of the wall time: loading the base and adapters, scoring (teacher-forced pass, metrics), writing.
    return {
        "wall_s": wall,
        "tokens": events.generated_tokens,
        "sequences": events.rows,
        "generate_s": generate,
        "other_s": wall - generate,
        "batches": len(events.batch_seconds),
        "combinations": len(combinations),
    }


def run_baseline(model_dir: Path, adapters: list[Path], dataset: Path, args) -> dict[str, Any]:
    """The seed's approach on a subsample, extrapolated to every adapter and prompt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from trainer.data.loading import load_rows
    from trainer.data.training_data import evaluation_cases
    from trainer.demo.corpus import demo_prompt
    from trainer.protocol import DataSource

    prompt = demo_prompt()
    data = DataSource(
        "project_jsonl", str(dataset), input_template=prompt["input_template"], completion_template=prompt["completion_template"]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    # Every (prompts / sample)-th prompt, so the subsample spans the prompt lengths.
    indices = list(range(0, args.prompts, args.prompts // args.baseline_prompts))[: args.baseline_prompts]
    prompts = [case.prompt for case in evaluation_cases(load_rows(data), indices, data, tokenizer)]
    loads, per_prompt = [], []
    for path in adapters[: args.baseline_adapters]:
        sync(args.device)
        start = time.perf_counter()
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map={"": args.device})
        model = PeftModel.from_pretrained(base, str(path)).eval()
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer, batch_size=2)
        sync(args.device)
        loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        outputs = generator(
            prompts, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, return_full_text=False
        )
        sync(args.device)
        per_prompt.append((time.perf_counter() - start) / len(prompts))
        assert len(outputs) == len(prompts)
        del generator, model, base
        release(args.device)
    load_s, prompt_s = sum(loads) / len(loads), sum(per_prompt) / len(per_prompt)
    wall = len(adapters) * (load_s + prompt_s * args.prompts)
    return {
        "wall_s": wall,
        "tokens": len(adapters) * args.prompts * args.new_tokens,
        "load_s_per_adapter": load_s,
        "s_per_prompt": prompt_s,
        "measured_adapters": len(loads),
        "measured_prompts": len(prompts),
        "measured_s": sum(loads) + sum(per_prompt) * len(prompts),
    }


def profile_steps(model_dir: Path, adapters: list[Path], dataset: Path, args, steps: int = 32) -> dict[str, float]:
    """Milliseconds per decoding step of one evaluation batch (``--batch-size`` rows x every adapter) through
    ``generate_batch``: as ftapp runs it, with PEFT's own mixed-batch LoRA, and the base model without LoRA."""
    from contextlib import nullcontext

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import trainer.inference.generation as generation
    from trainer.data.loading import load_rows
    from trainer.data.training_data import evaluation_cases
    from trainer.demo.corpus import demo_prompt
    from trainer.protocol import DataSource

    prompt = demo_prompt()
    data = DataSource(
        "project_jsonl", str(dataset), input_template=prompt["input_template"], completion_template=prompt["completion_template"]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cases = evaluation_cases(load_rows(data), list(range(args.batch_size)), data, tokenizer)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map={"": args.device}), str(adapters[0]), adapter_name="c1"
    )
    for number, path in enumerate(adapters[1:], 2):
        model.load_adapter(str(path), adapter_name=f"c{number}")
    model.eval()
    names = [f"c{number}" for number in range(1, len(adapters) + 1) for _ in cases]
    prompts = [generation.encode_prompt(tokenizer, case.prompt) for _ in adapters for case in cases]

    def seconds(tokens: int, adapter_names: list[str] | None) -> float:
        config = generation.generation_config(model, tokenizer, {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False})
        return generation.generate_batch(model, tokenizer, prompts, config, adapter_names).seconds

    def per_step(adapter_names: list[str] | None) -> float:
        seconds(2, adapter_names)  # warm-up
        return (seconds(steps + 1, adapter_names) - seconds(1, adapter_names)) / steps * 1000

    result = {"sequences": len(prompts), "ftapp_ms": per_step(names)}
    grouped = generation._grouped_lora
    generation._grouped_lora = lambda model, names: nullcontext(False)  # PEFT's adapter_names path, as before
    try:
        result["peft_mixed_ms"] = per_step(names)
    finally:
        generation._grouped_lora = grouped
    with model.disable_adapter():
        result["no_lora_ms"] = per_step(None)
    return result


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def warm_up(device: str) -> None:
    """Start CUDA and cuBLAS before anything is timed, so neither side pays for it."""
    if device == "cuda":
        a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def table(ours: dict[str, Any], base: dict[str, Any], args) -> str:
    rows = [("ftapp run_evaluation (measured)", ours), ("seed pipeline bs=2 (extrapolated)", base)]
    lines = [f"{'approach':36} {'wall s':>9} {'tokens':>8} {'tokens/s':>9} {'vs baseline':>12} {'peak GiB':>9}"]
    for name, r in rows:
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        lines.append(
            f"{name:36} {r['wall_s']:9.1f} {r['tokens']:8d} {r['tokens'] / r['wall_s']:9.1f} "
            f"{base['wall_s'] / r['wall_s']:11.1f}x {peak:>9}"
        )
    target = "meets" if base["wall_s"] / ours["wall_s"] >= 100 else "misses"
    lines.append(f"ftapp {target} the 100x target; generate() alone: {ours['tokens'] / ours['generate_s']:.0f} tokens/s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 adapters, 8 prompts, 8 tokens, on the CPU")
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch (x combinations = sequences per generate)")
    parser.add_argument("--with-base", action="store_true", help="also evaluate the base model alone (one more combination)")
    parser.add_argument("--baseline-adapters", type=int, default=2, help="adapters the baseline really runs")
    parser.add_argument("--baseline-prompts", type=int, default=8, help="prompts the baseline really runs per adapter")
    parser.add_argument("--profile", action="store_true", help="also time one decoding step with and without PEFT's mixed batches")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.smoke:
        args.adapters, args.prompts, args.new_tokens, args.baseline_prompts, args.baseline_adapters = 2, 8, 8, 2, 1
        args.batch_size = min(args.batch_size, 4)
    args.device = "cpu" if args.smoke else "cuda"
    lengths = (16, 40) if args.smoke else (64, 200)

    from trainer.demo.model import build_demo_kit

    work = Path(tempfile.mkdtemp(prefix="ftapp-eval-bench-"))
    warm_up(args.device)
    started = time.perf_counter()
    kit = build_demo_kit(work / "kit", pretrain_steps=0)  # only for its offline BPE tokenizer (ids < 128256)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(kit.model_dir)
    model_dir = build_model(TINY if args.smoke else LLAMA_32_3B, tokenizer, work / "model", args.device)
    adapters = build_adapters(model_dir, args.adapters, work, args.device)
    write_dataset(tokenizer, args.prompts, work / "prompts.jsonl", lengths)
    release(args.device)
    print(f"setup (model, adapters, prompts) took {time.perf_counter() - started:.1f}s", flush=True)

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = run_baseline(model_dir, adapters, work / "prompts.jsonl", args)
    baseline["peak_gib"] = peak_gib(args.device)
    release(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ours = run_ours(model_dir, adapters, work / "prompts.jsonl", work, args)
    ours["peak_gib"] = peak_gib(args.device)
    release(args.device)
    steps = profile_steps(model_dir, adapters, work / "prompts.jsonl", args) if args.profile else None

    shape = "tiny (smoke)" if args.smoke else "Llama-3.2-3B, random weights, bf16"
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(json.dumps({"baseline": baseline, "ours": ours, "decode_step": steps}, indent=1))
    print(
        f"\n{shape} on {device}: {args.adapters} adapters x {args.prompts} prompts x {args.new_tokens} new tokens"
        f"{' + the base model as a combination' if args.with_base else ' (the base alone is not a combination)'}; "
        f"ftapp batch_size {args.batch_size} rows = {args.batch_size * ours['combinations']} sequences per generate()"
    )
    print(
        f"baseline extrapolated from {baseline['measured_adapters']} adapter(s) x {baseline['measured_prompts']} prompts "
        f"({baseline['measured_s']:.1f}s measured): {args.adapters} x ({baseline['load_s_per_adapter']:.1f}s load "
        f"+ {baseline['s_per_prompt']:.2f}s/prompt x {args.prompts})"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "baseline": baseline, "ours": ours, "decode_step": steps})
        )
    if steps:
        print(
            f"one decoding step of {steps['sequences']} sequences: ftapp {steps['ftapp_ms']:.1f} ms, PEFT mixed-batch LoRA "
            f"{steps['peft_mixed_ms']:.1f} ms, base model without LoRA {steps['no_lora_ms']:.1f} ms"
        )
    print(table(ours, baseline, args))


if __name__ == "__main__":
    main()
