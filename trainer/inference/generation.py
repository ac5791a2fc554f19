"""Batched generation and teacher-forced scoring for one base model carrying several LoRA adapters.

Rows of one batch may each use a different adapter (PEFT's mixed-adapter batches, ``adapter_names``;
``BASE_ADAPTER`` is the base model alone), so every adapter of a base model answers the same prompts
in one forward pass per decoding step instead of one pass per adapter. Prompts are left-padded, so
every row's next token sits in the last column.

Prompts are tokenized the way TRL tokenized them for training: text through the tokenizer (which
adds BOS where the model expects it), chat turns through the chat template with the generation prompt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" inside a mixed-adapter batch

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class Generated:
    texts: list[str]
    new_tokens: list[int]  # tokens each row generated, its stop token included
    seconds: float


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def encode_answer(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, prompt_ids: list[int], answer: str) -> list[int]:
    """The token ids of ``answer`` as training saw them after ``prompt``, its stop token included."""
    if isinstance(prompt, str):
        full = list(tokenizer(prompt + answer)["input_ids"])
        tail = (
            full[len(prompt_ids) :]
            if full[: len(prompt_ids)] == prompt_ids
            else list(tokenizer(answer, add_special_tokens=False)["input_ids"])
        )
        return tail + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])  # TRL appends EOS
    conversation = [*prompt, {"role": "assistant", "content": answer}]
    full = list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
    if full[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template renders the prompt differently once the answer follows; cannot score the answer")
    return full[len(prompt_ids) :]


def left_pad(rows: Sequence[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: dict[str, Any]) -> GenerationConfig:
    """The model's own generation config (its EOS ids) overlaid with the run's settings."""
    config = GenerationConfig.from_dict({**model.generation_config.to_dict(), **_known(settings)})
    config.pad_token_id = tokenizer.pad_token_id
    if not config.do_sample:  # greedy: sampling knobs would only trigger warnings
        config.temperature, config.top_p, config.top_k = None, None, None
    return config


def _known(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if value is not None}


@torch.no_grad()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[list[int]],
    config: GenerationConfig,
    adapter_names: list[str] | None = None,
    streamer: Any = None,
) -> Generated:
    """One answer per prompt; ``adapter_names[i]`` picks row i's adapter when the model carries adapters."""
    inputs, mask = left_pad(prompt_ids, tokenizer.pad_token_id, model.device)
    start = time.perf_counter()
    with _grouped_lora(model, adapter_names) as grouped:
        extra = {"adapter_names": adapter_names} if adapter_names is not None and not grouped else {}
        if config.stop_strings:  # transformers matches stop strings through the tokenizer's vocabulary
            extra["tokenizer"] = tokenizer
        output = model.generate(input_ids=inputs, attention_mask=mask, generation_config=config, streamer=streamer, **extra)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - start
    texts, counts = decode_completions(tokenizer, output[:, inputs.shape[1] :].tolist(), stop_ids(config, tokenizer))
    return Generated(texts, counts, seconds)


def decode_completions(tokenizer: PreTrainedTokenizerBase, rows: list[list[int]], stops: set[int]) -> tuple[list[str], list[int]]:
    """Each row's text up to its first stop token, and how many tokens that was (the stop token included)."""
    texts, counts = [], []
    for row in rows:
        length = next((i + 1 for i, token in enumerate(row) if token in stops), len(row))
        counts.append(length)
        texts.append(tokenizer.decode(row[:length], skip_special_tokens=True).strip())
    return texts, counts


@contextmanager
def _grouped_lora(model: PreTrainedModel, adapter_names: list[str] | None) -> Iterator[bool]:
    """Mixed-adapter LoRA as two batched matmuls per layer (``GroupedLora``), when rows come in equal blocks, one
    per adapter. Yields whether the layers were switched; otherwise (other layouts, LoRA variants such as DoRA,
    merged or quantised layers) nothing changes and the caller passes ``adapter_names`` to PEFT as before."""
    blocks = _equal_blocks(adapter_names)
    grouped = GroupedLora.build(model, blocks) if blocks and not model.training else None
    if grouped is None:
        yield False
        return
    with grouped.active():
        yield True


class GroupedLora:
    """Every LoRA layer computing rows in equal blocks, block k through adapter k, as two batched matmuls.

    PEFT's mixed batches loop over the adapters in every LoRA layer at every decoding step (index the
    sub-batch, two small matmuls, scatter back: about 8 tiny kernels per adapter and layer), which left
    a GPU waiting on Python for most of each step. Rows laid out adapter-major in equal blocks reshape to
    (adapters, rows x tokens, features), and every adapter's A and B, stacked (``__base__`` as zeros), apply
    as one ``bmm`` and one ``baddbmm`` into the base output. The stacks live as long as this object, so a
    CUDA graph captured while it is active keeps reading them.
    """

    def __init__(self, layers: list[LoraLinear], blocks: list[str]):
        self.layers = layers
        self.stacks = [_allocated(layer, blocks) for layer in layers]
        for block, name in enumerate(blocks):
            self.fill(block, name)

    @classmethod
    def build(cls, model: PreTrainedModel, blocks: list[str]) -> GroupedLora | None:
        """None unless ``model`` carries PEFT's LoRA layers, all plain (``_plain_lora``) for these adapters."""
        layers = [m for m in model.modules() if isinstance(m, LoraLinear)] if isinstance(model, PeftModel) else []
        if not layers or not all(_plain_lora(layer, blocks) for layer in layers):
            return None
        return cls(layers, blocks)

    @torch.no_grad()
    def fill(self, block: int, name: str) -> None:
        """Block ``block`` computes as adapter ``name`` holds its weights now (zeros where it has no LoRA on a layer)."""
        for layer, (a, b) in zip(self.layers, self.stacks):
            a[block].zero_()
            b[block].zero_()
            if name in layer.lora_A:
                r = layer.lora_A[name].weight.shape[0]
                a[block, :, :r] = layer.lora_A[name].weight.T
                b[block, :r] = layer.lora_B[name].weight.T * layer.scaling[name]

    @contextmanager
    def active(self) -> Iterator[None]:
        for layer, (a, b) in zip(self.layers, self.stacks):
            layer.forward = partial(_grouped_forward, layer, a, b)  # shadows the class's forward
        try:
            yield
        finally:
            for layer in self.layers:
                del layer.forward


def _equal_blocks(names: list[str] | None) -> list[str] | None:
    """The adapter of each block when ``names`` is equal-sized runs of distinct adapters, else None."""
    if not names:
        return None
    blocks = list(dict.fromkeys(names))
    size = len(names) // len(blocks)
    if size * len(blocks) != len(names) or names != [name for name in blocks for _ in range(size)]:
        return None
    return blocks


def _plain_lora(layer: LoraLinear, blocks: list[str]) -> bool:
    used = [name for name in blocks if name in layer.lora_A]
    return (
        type(layer) is LoraLinear
        and not layer.merged
        and not layer.disable_adapters
        and not any(name in layer.lora_variant or layer.lora_B[name].bias is not None for name in used)
    )


def _allocated(layer: LoraLinear, blocks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeros for A as (blocks, in, r) and B x scaling as (blocks, r, out), r the largest rank of the blocks' adapters.

    In the base layer's dtype, so the two matmuls need no casts: PEFT keeps a bf16 model's adapters in
    float32, but each cast is one more kernel per layer and step, and the matmuls accumulate in float32.
    """
    weight = layer.base_layer.weight
    rank = max((layer.lora_A[name].weight.shape[0] for name in blocks if name in layer.lora_A), default=1)
    a = torch.zeros(len(blocks), layer.in_features, rank, dtype=weight.dtype, device=weight.device)
    b = torch.zeros(len(blocks), rank, layer.out_features, dtype=weight.dtype, device=weight.device)
    return a, b


def _grouped_forward(layer: LoraLinear, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    result = layer.base_layer(x, *args, **kwargs)
    grouped = result.view(len(a), -1, result.shape[-1])
    # result + (x A) B per block: two kernels per layer, where every extra kernel costs GPU time at each step.
    return torch.baddbmm(grouped, torch.bmm(x.reshape(len(a), -1, x.shape[-1]).to(a.dtype), a), b).view(result.shape)


def stop_ids(config: GenerationConfig, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) - {None}


@torch.no_grad()
def answer_log_likelihood(
    model: PreTrainedModel,
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[list[int]],
    pad_id: int,
    adapter_names: list[str] | None = None,
) -> list[tuple[float, int]]:
    """(sum of log p(answer token | everything before it), answer tokens) per row, teacher-forced.

    Rows are left-padded, so every answer ends in the last column: only the last ``longest answer + 1``
    positions need logits. Full-sequence float32 logits over a 128k vocabulary were the memory peak of
    an evaluation and capped its batch size.
    """
    rows = [list(p) + list(a) for p, a in zip(prompt_ids, answer_ids)]
    inputs, mask = left_pad(rows, pad_id, model.device)
    keep = max((len(a) for a in answer_ids), default=0) + 1
    with _grouped_lora(model, adapter_names) as grouped:
        extra = {"adapter_names": adapter_names} if adapter_names is not None and not grouped else {}
        logits = model(input_ids=inputs, attention_mask=mask, logits_to_keep=keep, **extra).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = inputs[:, inputs.shape[1] - keep + 1 :]
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return [
        (float(picked[i, picked.shape[1] - len(answer) :].sum()) if answer else 0.0, len(answer)) for i, answer in enumerate(answer_ids)
    ]


@torch.no_grad()
def continuation_scores(
    model: PreTrainedModel,
    context_ids: Sequence[list[int]],
    continuation_ids: Sequence[list[int]],
    pad_id: int,
    adapter_names: list[str] | None = None,
) -> list[tuple[float, bool]]:
    """(sum of log p(continuation | context), whether greedy decoding would produce the continuation) per row.

    What lm-evaluation-harness asks of a model for multiple-choice and likelihood tasks; like
    ``answer_log_likelihood``, only the last ``longest continuation + 1`` positions get logits.
    """
    rows = [list(c) + list(a) for c, a in zip(context_ids, continuation_ids)]
    inputs, mask = left_pad(rows, pad_id, model.device)
    keep = max((len(a) for a in continuation_ids), default=0) + 1
    with _grouped_lora(model, adapter_names) as grouped:
        extra = {"adapter_names": adapter_names} if adapter_names is not None and not grouped else {}
        logits = model(input_ids=inputs, attention_mask=mask, logits_to_keep=keep, **extra).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = inputs[:, inputs.shape[1] - keep + 1 :]
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    greedy = log_probs.argmax(-1) == targets
    scores = []
    for i, continuation in enumerate(continuation_ids):
        n = len(continuation)
        scores.append((float(picked[i, picked.shape[1] - n :].sum()), bool(greedy[i, greedy.shape[1] - n :].all())) if n else (0.0, True))
    return scores
