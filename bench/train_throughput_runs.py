"""Pieces of ``bench/train_throughput.py``: shapes, the synthetic data, random models, in-process TRL runs.

Data: one-token words (a word-level tokenizer over ``w0 .. w3999``), so a row of ``n`` words is ``n``
tokens. Row lengths are lognormal (median 250 tokens, sigma 0.8, clipped to 2048); a third of each row
is the prompt, the rest the completion the loss is taken on. The learnable pattern: each next word is
``PERM[previous]`` with probability 0.9 (a fixed permutation), else random, so even a LoRA on a random
model lowers the loss from ln(vocab) quickly (unigram) and then further (bigram).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from model_shapes import LLAMA_31_8B, LLAMA_32_1B, QWEN_25_7B, TINY

from trainer.padding_free import VARLEN_ATTENTION
from trainer.varlen_attention import register as register_varlen_attention

WORDS = 4000
MAX_TOKENS = 2048
SHAPES: dict[str, dict[str, Any]] = {
    "llama-1b": {"model_type": "llama", **LLAMA_32_1B},
    "llama-8b": {"model_type": "llama", **LLAMA_31_8B},
    "qwen-7b": {"model_type": "llama", **QWEN_25_7B},
    "tiny": {"model_type": "llama", **TINY, "vocab_size": WORDS + 8, "tie_word_embeddings": False},
}
PEAK_TFLOPS = 790.0  # bf16 matmul measured on these H200s (KINDS.md)
LORA_R16_ALL = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}  # ftapp's modern default


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": 4 + i for i in range(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.save_pretrained(out)
    return tokenizer


def write_dataset(path: Path, rows: int, seed: int = 0) -> list[dict[str, str]]:
    """``rows`` {"question", "answer"} rows; lengths in tokens include the EOS TRL appends."""
    rng = random.Random(seed)
    perm = list(range(WORDS))
    random.Random(1234).shuffle(perm)
    data = []
    for _ in range(rows):
        length = min(MAX_TOKENS - 1, max(8, round(math.exp(rng.gauss(math.log(250), 0.8)))))
        words = [rng.randrange(WORDS)]
        while len(words) < length:
            words.append(perm[words[-1]] if rng.random() < 0.9 else rng.randrange(WORDS))
        cut = max(1, length // 3)
        data.append({"question": " ".join(f"w{w}" for w in words[:cut]), "answer": " ".join(f"w{w}" for w in words[cut:])})
    path.write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")
    return data


def row_tokens(row: dict[str, str]) -> int:
    return len(row["question"].split()) + len(row["answer"].split()) + 1  # + EOS


def build_model(name: str, tokenizer, out: Path, device: str) -> dict[str, Any]:
    """Random weights in ``name``'s shape, built on ``device`` in bf16 (float32 on CPU), saved with the tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(SHAPES[name])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = AutoConfig.for_model(shape.pop("model_type"), **shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    started = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    built = time.perf_counter() - started
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    return {
        "parameters": parameters,
        "build_s": round(built, 1),
        "save_s": round(time.perf_counter() - started - built, 1),
        "layers": config.num_hidden_layers,
        "attn_width": config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads),
    }


def flops_per_token(model_info: dict[str, Any], rows: list[dict[str, str]]) -> float:
    """LoRA: ~4 N per token (forward, and the backward's input gradients) plus causal attention, whose
    forward is 2 L^2 d per layer for a sequence of L and the backward twice that, averaged over the data."""
    lengths = [row_tokens(r) for r in rows]
    mean_square_over_mean = sum(n * n for n in lengths) / sum(lengths)
    attention = 6 * model_info["layers"] * model_info["attn_width"] * mean_square_over_mean
    return 4 * model_info["parameters"] + attention


@dataclass
class Measured:
    variant: str
    model: str
    tokens_per_s: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    first_loss_s: float | None = None
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def summarize(result: Measured, times: list[float], tokens: list[float], warmup: int, flops: float) -> None:
    """Real tokens per second over the steps after ``warmup`` (times/tokens: cumulative, one per step)."""
    if len(times) <= warmup + 1:
        result.error = result.error or f"only {len(times)} steps"
        return
    rate = (tokens[-1] - tokens[warmup]) / (times[-1] - times[warmup])
    result.tokens_per_s = round(rate, 1)
    result.mfu = round(rate * flops / (PEAK_TFLOPS * 1e12), 4)
    result.detail.update(
        steps_measured=len(times) - 1 - warmup, tokens_per_step=round((tokens[-1] - tokens[warmup]) / (len(times) - 1 - warmup))
    )


def step_clock(trainer):
    """A TrainerCallback: per optimizer step, the time after a device sync and TRL's running count of
    real (non-padding) tokens; per log, the loss and gradient norm."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times, self.tokens, self.losses, self.grad_norms = [], [], [], []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            self.tokens.append(float(trainer._total_train_tokens))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.grad_norms.append(float(logs.get("grad_norm") or 0.0))

    return StepClock()


def run_trl(
    variant: str,
    model_name: str,
    model_dir: Path,
    rows: list[dict[str, str]],
    *,
    steps: int,
    warmup: int,
    flops: float,
    sft: dict[str, Any],
    lora: dict[str, Any],
    quantized: bool = False,
    attn: str | None = None,
    liger: bool = False,
    fused_adapters: bool = False,
    device: str = "cuda",
) -> Measured:
    """One training run in this process through TRL's SFTTrainer (the baselines, and the parity check)."""
    import datasets
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, set_seed
    from trl import SFTConfig, SFTTrainer

    result = Measured(variant, model_name)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device == "cuda" else torch.float32}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    if attn:
        kwargs["attn_implementation"] = attn
    if attn == VARLEN_ATTENTION:
        register_varlen_attention()  # as trainer.model_loading does before loading
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
        )
    datasets.disable_progress_bars()
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = datasets.Dataset.from_list([{"prompt": r["question"], "completion": " " + r["answer"]} for r in rows])
    set_seed(42)
    from dataclasses import fields

    from trainer.training_arguments import fit_to_installed

    values = dict(
        output_dir=str(model_dir.parent / f"out-{variant}-{model_name}"),
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=42,
        use_cpu=device != "cuda",
        bf16=device == "cuda",
        use_liger_kernel=liger,
        **sft,
    )
    config = SFTConfig(**fit_to_installed(values, {f.name for f in fields(SFTConfig)}))  # the GPU host's TRL may lag
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=LoraConfig(task_type="CAUSAL_LM", **lora)
    )
    if fused_adapters:
        from trainer.model_loading import speed_up_adapters

        result.detail["fused_adapters"] = speed_up_adapters(trainer.model)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the step clock keeps the losses; the log keeps the table readable
    clock = step_clock(trainer)
    trainer.add_callback(clock)
    try:
        trainer.train()
    except Exception as exc:  # one failed variant must not lose the others' numbers
        result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    if clock.times:
        result.first_loss_s = round(clock.times[0] - started, 1)
    result.losses, result.grad_norms = clock.losses, clock.grad_norms
    summarize(result, clock.times, clock.tokens, warmup, flops)
    if device == "cuda":
        result.peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result.detail["reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    del trainer, model
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


class MemoryPoller:
    """Peak device memory in use while a child process trains, above the level before it started."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()
        self.baseline = self._used()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _used() -> int:
        if not torch.cuda.is_available():
            return 0
        free, total = torch.cuda.mem_get_info(0)
        return total - free

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._used())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(0, self.peak - self.baseline) / 2**30


def kernel_family(name: str) -> str:
    lowered = name.lower()
    for family, marks in (
        ("flex attention", ("flex",)),
        ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "sm90_", "splitk")),
        ("liger", ("liger", "_rms_norm", "swiglu", "rope")),
        ("loss (TRL chunked)", ("_forward_kernel", "_backward_kernel")),
        ("optimizer", ("adam", "multi_tensor")),
        ("4-bit dequant", ("dequant", "kdequant", "4bit")),
        ("inductor fused", ("triton_",)),
        ("copies/casts", ("copy", "cat", "fill")),
        ("elementwise/reduce", ("elementwise", "reduce", "vectorized", "unrolled")),
    ):
        if any(mark in lowered for mark in marks):
            return family
    return "other"
