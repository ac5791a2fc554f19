"""Throughput of ftapp's batched multi-adapter evaluation against the seed's one-pipeline-per-adapter approach.

The issue's setup: 8 LoRA adapters x 128 prompts x 128 new tokens on a random-initialised
Llama-3.2-3B-shaped model. Both sides run in this one process on the same GPU:

* ftapp: an ``EvaluationSpec`` through ``trainer.evaluation.recipe.run_evaluation``, the code path the
  app uses (base loaded once; ``trainer.evaluation.answer_batches`` decodes through CUDA graphs over a
  static cache and scores the reference answers in the same prefill; with 128 rows, fewer than a chunk of
  64 x 8, all adapters decode together in blocks, one grouped LoRA matmul per layer, and the adapters
  after the first take turns in its tensors), timed wall-clock as a whole, and the time to its first
  answered row. ``--breakdown`` times the sampler's prefill, weight refresh and graph capture apart.
  ``--compare-norms N`` then runs it N times each with and without the sampler's fused RMSNorm, alternating.
  ``--compare-mixed`` also times the first row of the mixed-adapter ``generate`` path it replaced.
* baseline (the seed): per adapter, load the model, wrap it with the adapter and run a transformers
  ``text-generation`` pipeline with ``batch_size=2``. Running all of it would take the better part of an
  hour, so it runs on a subsample (a few prompts of one or two adapters) and is extrapolated:
  ``adapters * (load time + seconds per prompt * prompts)``.

``min_new_tokens`` forces exactly ``--new-tokens`` tokens on both sides: random weights emit EOS at random.

Equality: for the first and the last adapter, ``--reference-prompts`` prompts are answered again one at a
time by PEFT's unmerged adapter (greedy ``generate``, teacher-forced reference answer). Log-likelihoods are
compared; a greedy answer that differs is counted with the reference's top-2 logit margin at the first
differing token (bf16 rounding flips near-ties, after which the rest of an answer differs).

    FTAPP_MLFLOW=0 python bench/eval_throughput.py                      # the issue's run (CUDA)
    python bench/eval_throughput.py --smoke                              # tiny shapes on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from model_shapes import LLAMA_32_3B, TINY

TINY_3B = {**LLAMA_32_3B, **TINY}  # the 3B config with tiny dimensions: checks the script on the CPU


class FirstRow(Exception):
    """Raised by a recorder that only waits for the first answered row."""


class Recorder:
    """An event sink that keeps what the bench needs: when each event came, how many tokens were generated, and
    each answer (for the equality check)."""

    def __init__(self, stop_at_first_row: bool = False) -> None:
        self.started = time.perf_counter()
        self.stop_at_first_row = stop_at_first_row
        self.events: list[tuple[float, str]] = []
        self.generated_tokens = 0
        self.rows = 0
        self.batch_seconds: list[float] = []
        self.first_row_s: float | None = None
        self.answers: dict[tuple[int, int], dict[str, Any]] = {}

    def emit(self, kind: str, /, **data: Any) -> None:
        self.events.append((time.perf_counter() - self.started, kind))
        if kind == "sample":
            if self.first_row_s is None:
                self.first_row_s = self.events[-1][0]
            self.rows += len(data["rows"])
            self.generated_tokens += sum(row["new_tokens"] for row in data["rows"])
            self.batch_seconds.append(data["rows"][0]["latency_s"])  # every row of a batch carries its generate() time
            self.answers.update(((row["position"], row["row_index"]), row) for row in data["rows"])
            if self.stop_at_first_row:
                raise FirstRow


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


def run_ours(model_dir: Path, adapters: list[Path], dataset: Path, work: Path, args, mixed: bool = False) -> dict[str, Any]:
    """One ``run_evaluation`` over every adapter and prompt, timed as a whole (loading and scoring included).
    ``mixed``: through the mixed-adapter ``generate`` path instead, until its first answered row only."""
    from unittest import mock

    from trainer.demo.corpus import demo_prompt
    from trainer.evaluation.recipe import run_evaluation
    from trainer.protocol import DataSource, EvalCombination, EvaluationSpec, ModelSource

    prompt = demo_prompt()
    model = ModelSource(str(model_dir))
    combinations = [EvalCombination(1, "base", model)] if args.with_base else []
    # Positions 1..N: a comprehension reading len(combinations) saw the list before it grew, so until issue 17 every
    # adapter was combination 1 under one adapter name (c1), and the bench evaluated one adapter eight times.
    first = len(combinations) + 1
    combinations += [EvalCombination(first + number, path.name, model, str(path)) for number, path in enumerate(adapters)]
    spec = EvaluationSpec(
        run_id="bench",
        run_dir=str(work / ("mixed-run" if mixed else "eval-run")),
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
    events = Recorder(stop_at_first_row=mixed)
    if mixed:
        with mock.patch("trainer.evaluation.answer_batches.graphed_sampler", lambda *_, **__: None), contextlib.suppress(FirstRow):
            run_evaluation(spec, events)
        return {"first_row_s": events.first_row_s}
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
        "first_row_s": events.first_row_s,
        "batches": len(events.batch_seconds),
        "combinations": len(combinations),
        "answers": events.answers,
    }


@contextlib.contextmanager
def breakdown(device: str, seconds: dict[str, float]):
    """Seconds spent in the graphed sampler's prefill, weight refresh and graph capture (synchronised around each:
    a little slower than without)."""
    from unittest import mock

    from trainer.inference.graphed_sampler import GraphedSampler
    from trainer.inference.merged_adapters import MergedAdapters

    def timed(name: str, function):
        def run(*args, **kwargs):
            sync(device)
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sync(device)
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - began

        return run

    with (
        mock.patch.object(GraphedSampler, "_prefill", timed("prefill_s", GraphedSampler._prefill)),
        mock.patch.object(GraphedSampler, "_capture", timed("capture_s", GraphedSampler._capture)),
        mock.patch.object(MergedAdapters, "refresh", timed("refresh_s", MergedAdapters.refresh)),
    ):
        yield


def run_reference(model_dir: Path, adapters: list[Path], dataset: Path, ours: dict[str, Any], args) -> dict[str, Any]:
    """The first and the last adapter, unmerged in PEFT, one prompt at a time: greedy answers and teacher-forced
    reference log-likelihoods, against ftapp's (positions as ``run_ours`` numbered them)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data.loading import load_rows
    from trainer.data.training_data import evaluation_cases
    from trainer.demo.corpus import demo_prompt
    from trainer.inference.generation import answer_log_likelihood, encode_answer, encode_prompt
    from trainer.protocol import DataSource

    prompt = demo_prompt()
    data = DataSource(
        "project_jsonl", str(dataset), input_template=prompt["input_template"], completion_template=prompt["completion_template"]
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    indices = list(range(0, args.prompts, max(1, args.prompts // args.reference_prompts)))[: args.reference_prompts]
    cases = evaluation_cases(load_rows(data), indices, data, tokenizer)
    chosen = sorted({0, len(adapters) - 1})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map={"": args.device})
    model = PeftModel.from_pretrained(model, str(adapters[chosen[0]]), adapter_name=f"a{chosen[0]}")
    for number in chosen[1:]:
        model.load_adapter(str(adapters[number]), adapter_name=f"a{number}")
    model.eval()
    compared, differing, margins, likelihood_errors, agreeing_tokens = 0, 0, [], [], []
    for number in chosen:
        model.set_adapter(f"a{number}")
        position = number + 1 + int(args.with_base)
        for case in cases:
            ids = encode_prompt(tokenizer, case.prompt)
            answer = encode_answer(tokenizer, case.prompt, ids, case.answer)
            with torch.no_grad():
                out = model.generate(
                    input_ids=torch.tensor([ids], device=args.device),
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            tokens = out.sequences[0, len(ids) :].tolist()
            [(expected, _)] = answer_log_likelihood(model, [ids], [answer], tokenizer.pad_token_id)
            row = ours["answers"][(position, case.row_index)]
            likelihood_errors.append(abs(row["log_likelihood"] - expected))
            compared += 1
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            if text == row["output"]:
                agreeing_tokens.append(len(tokens))
                continue
            differing += 1
            # The first reference token whose text is no longer a prefix of ftapp's answer, and how close a call it was.
            step = next(
                (
                    t
                    for t in range(len(tokens))
                    if not row["output"].startswith(tokenizer.decode(tokens[: t + 1], skip_special_tokens=True).strip())
                ),
                len(tokens) - 1,
            )
            top = out.scores[step][0].float().topk(2).values
            margins.append(float(top[0] - top[1]))
            agreeing_tokens.append(step)
    del model
    release(args.device)
    return {
        "compared": compared,
        "differing": differing,
        "margins_at_divergence": margins,
        "near_ties": sum(m <= args.near_tie for m in margins),
        "mean_tokens_before_divergence": sum(agreeing_tokens) / max(1, len(agreeing_tokens)),
        "max_log_likelihood_error": max(likelihood_errors, default=0.0),
        "mean_abs_log_likelihood": sum(abs(r["log_likelihood"]) for r in ours["answers"].values()) / max(1, len(ours["answers"])),
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


def compare_norms(model_dir: Path, adapters: list[Path], dataset: Path, work: Path, args) -> dict[str, Any]:
    """``run_ours`` ``--compare-norms`` times each with the sampler's fused RMSNorm and with transformers' own, alternating
    in this process: wall, prefill and decoding seconds per run, and how far the answers and log-likelihoods moved."""
    from unittest import mock

    from trainer.inference import graphed_sampler

    runs: dict[str, list[dict[str, float]]] = {"fused": [], "transformers": []}
    answers: dict[str, dict] = {}
    for _ in range(args.compare_norms):
        for name in runs:
            own = mock.patch.object(graphed_sampler, "fused_norms", lambda model, device: contextlib.nullcontext(0))
            parts: dict[str, float] = {}
            with breakdown(args.device, parts), own if name == "transformers" else contextlib.nullcontext():
                result = run_ours(model_dir, adapters, dataset, work, args)
            answers.setdefault(name, result.pop("answers"))
            decode = result["generate_s"] - sum(parts.values())
            runs[name].append(
                {"wall_s": round(result["wall_s"], 2), "prefill_s": round(parts["prefill_s"], 2), "decode_s": round(decode, 2)}
            )
            print(f"norms {name}: {runs[name][-1]}", flush=True)
            release(args.device)
    fused, own = answers["fused"], answers["transformers"]
    moved = [abs(fused[key]["log_likelihood"] - own[key]["log_likelihood"]) for key in fused if fused[key]["log_likelihood"] is not None]
    return {
        **runs,
        "identical_answers": sum(fused[key]["output"] == own[key]["output"] for key in fused),
        "answers": len(fused),
        "log_likelihood_moved_max": max(moved, default=0.0),
        "log_likelihood_moved_mean": sum(moved) / max(1, len(moved)),
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


def table(ours: dict[str, Any], base: dict[str, Any], reference: dict[str, Any] | None, mixed: dict[str, Any] | None, args) -> str:
    rows = [("ftapp run_evaluation (measured)", ours), ("seed pipeline bs=2 (extrapolated)", base)]
    lines = [f"{'approach':36} {'wall s':>9} {'tokens':>8} {'tokens/s':>9} {'vs baseline':>12} {'peak GiB':>9} {'1st row s':>9}"]
    for name, r in rows:
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        first = f"{r['first_row_s']:.1f}" if r.get("first_row_s") is not None else "-"
        lines.append(
            f"{name:36} {r['wall_s']:9.1f} {r['tokens']:8d} {r['tokens'] / r['wall_s']:9.1f} "
            f"{base['wall_s'] / r['wall_s']:11.1f}x {peak:>9} {first:>9}"
        )
    rate, speedup = ours["tokens"] / ours["wall_s"], base["wall_s"] / ours["wall_s"]
    target = "meets" if rate >= 20_000 and speedup >= 500 else "misses"
    lines.append(
        f"ftapp {target} the target (>= 20,000 tokens/s and >= 500x); generate() alone: {ours['tokens'] / ours['generate_s']:.0f} "
        f"tokens/s; loading, scoring and writing: {ours['other_s']:.1f}s"
    )
    if mixed:
        lines.append(f"first answered row: {ours['first_row_s']:.1f}s, mixed-adapter generate() path: {mixed['first_row_s']:.1f}s")
    if reference:
        lines.append(
            f"equality with PEFT unmerged, unbatched ({reference['compared']} answers of 2 adapters): "
            f"{reference['compared'] - reference['differing']} greedy answers identical, {reference['differing']} differ "
            f"({reference['near_ties']} at a near-tie, top-2 margin <= {args.near_tie}; margins "
            f"{', '.join(f'{m:.3f}' for m in reference['margins_at_divergence']) or '-'}; "
            f"{reference['mean_tokens_before_divergence']:.0f} tokens agree on average before any difference); reference "
            f"log-likelihood max |error| {reference['max_log_likelihood_error']:.4f} (mean |log-likelihood| "
            f"{reference['mean_abs_log_likelihood']:.1f})"
        )
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
    parser.add_argument("--reference-prompts", type=int, default=4, help="prompts of the first and last adapter checked unbatched")
    parser.add_argument("--near-tie", type=float, default=0.05, help="top-2 logit margin under which a differing token is a near-tie")
    parser.add_argument("--compare-mixed", action="store_true", help="also time the first row of the mixed-adapter generate() path")
    parser.add_argument("--breakdown", action="store_true", help="time the sampler's prefill, weight refresh and capture apart")
    parser.add_argument(
        "--compare-norms", type=int, default=0, metavar="N", help="then N runs each, alternating, with and without the fused RMSNorm"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.smoke:
        args.adapters, args.prompts, args.new_tokens, args.baseline_prompts, args.baseline_adapters = 3, 8, 8, 2, 1
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
    model_dir = build_model(TINY_3B if args.smoke else LLAMA_32_3B, tokenizer, work / "model", args.device)
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
    parts: dict[str, float] = {}
    with breakdown(args.device, parts) if args.breakdown else contextlib.nullcontext():
        ours = run_ours(model_dir, adapters, work / "prompts.jsonl", work, args)
    ours.update(parts)
    ours["peak_gib"] = peak_gib(args.device)
    release(args.device)
    reference = run_reference(model_dir, adapters, work / "prompts.jsonl", ours, args) if args.reference_prompts else None
    answers = ours.pop("answers")
    mixed = run_ours(model_dir, adapters, work / "prompts.jsonl", work, args, mixed=True) if args.compare_mixed else None
    release(args.device)
    steps = profile_steps(model_dir, adapters, work / "prompts.jsonl", args) if args.profile else None
    norms = compare_norms(model_dir, adapters, work / "prompts.jsonl", work, args) if args.compare_norms else None

    shape = "tiny (smoke)" if args.smoke else "Llama-3.2-3B, random weights, bf16"
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        json.dumps(
            {"baseline": baseline, "ours": ours, "reference": reference, "mixed": mixed, "decode_step": steps, "norms": norms}, indent=1
        )
    )
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
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "baseline": baseline,
                    "ours": ours,
                    "reference": reference,
                    "mixed": mixed,
                    "decode_step": steps,
                    "answers": [{"position": p, "row_index": i, "output": r["output"]} for (p, i), r in sorted(answers.items())],
                }
            )
        )
    if steps:
        print(
            f"one decoding step of {steps['sequences']} sequences: ftapp {steps['ftapp_ms']:.1f} ms, PEFT mixed-batch LoRA "
            f"{steps['peft_mixed_ms']:.1f} ms, base model without LoRA {steps['no_lora_ms']:.1f} ms"
        )
    print(table(ours, baseline, reference, mixed, args))


if __name__ == "__main__":
    main()
