"""Verify a GGUF export: load it back with transformers' GGUF loader and answer the fixed prompts of
``trainer.export.verify`` the way base + adapter answered them.

Two measures per file:

* **free-running**: the GGUF model's own tokenizer and chat template (from the file's metadata) encode each
  prompt, and its greedy answer, stopped by the file's EOS, is compared token for token with base + adapter's.
  A tokenizer, chat template or EOS lost on the way shows up here as different prompt ids or a different stop;
* **teacher-forced**: both models read the reference's prompt and answer, and at every answer position the GGUF
  model's top token is compared with the reference's (``token agreement``) and the logits are compared (``max
  logit difference``). Every position has the same context on both sides, so one early flip near a tie does not
  turn the rest of an answer into a mismatch, and the numbers measure the file's weights alone.

Both sides compute in float32, as llama.cpp does: base + adapter upcast for the reference (its weights go back to
their own dtypes for the merge), the GGUF file de-quantized to float32. In bf16 the rounding of every activation
moved logits by up to ~0.9 and flipped near-ties on its own; in float32 a 16-bit file differs from base + adapter
only by the merge's rounding of the weights, and a quantized one by its quantization on top. A file is verified
when its metadata encodes every prompt alike and its token agreement reaches the floor of its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from trainer.export.verify import PROMPTS, Trace, greedy_traces
from trainer.protocol import GGUF_CONVERTER_TYPES

# The least teacher-forced token agreement each kind of type keeps when the file is what it should be. 16-bit
# copies of the merged weights flip only near-ties (the merge rounds weights to the base's dtype); q8_0 rounds
# every weight to 8 bits per 32-block scale; k-quants of 2-6 bits move further.
AGREEMENT_FLOORS = {"f16": 0.97, "bf16": 0.97, "q8_0": 0.9}
K_QUANT_FLOOR = 0.6


@dataclass
class Reference:
    traces: list[Trace]  # base + adapter's greedy answers (generate's logits)
    forced: list[torch.Tensor]  # base + adapter's teacher-forced logits at each answer position, float32 on the CPU
    dtype: torch.dtype


def agreement_floor(gguf_type: str) -> float:
    return AGREEMENT_FLOORS.get(gguf_type, K_QUANT_FLOOR if gguf_type not in GGUF_CONVERTER_TYPES else 1.0)


@torch.no_grad()
def forced_logits(model: PreTrainedModel, prompt_ids: list[int], tokens: list[int]) -> torch.Tensor:
    """Logits predicting each of ``tokens`` after ``prompt_ids`` (and the tokens before it), in one forward pass."""
    if not tokens:
        return torch.zeros(0, model.config.vocab_size)
    ids = torch.tensor([prompt_ids + tokens[:-1]], device=model.device)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
    return logits[len(prompt_ids) - 1 :].float().cpu()


def take_reference(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int) -> Reference:
    """Base + adapter's answers in float32; every weight is back in its own dtype afterwards (the upcast is exact)."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    dtypes = {name: tensor.dtype for name, tensor in tensors}
    model.float()
    try:
        traces = greedy_traces(model, tokenizer, max_new_tokens)
        forced = [forced_logits(model, t.prompt_ids, t.tokens) for t in traces]
    finally:
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            tensor.data = tensor.data.to(dtypes[name])
    return Reference(traces, forced, torch.float32)


def load_gguf(path: Path, dtype: torch.dtype, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The file as transformers reads it (de-quantized), with the tokenizer and chat template of its metadata."""
    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": dtype}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(path.parent, **kwargs).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def compare_gguf(
    reference: Reference, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gguf_type: str, max_new_tokens: int
) -> dict[str, Any]:
    exported = greedy_traces(model, tokenizer, max_new_tokens)
    rows, worst, agreed, total = [], 0.0, 0, 0
    for prompt, ref, forced_ref, got in zip(PROMPTS, reference.traces, reference.forced, exported):
        forced = forced_logits(model, ref.prompt_ids, ref.tokens)
        picks = forced.argmax(dim=-1).tolist()
        row_agreed = sum(a == b for a, b in zip(picks, ref.tokens))
        diff = float((forced_ref - forced).abs().max()) if ref.tokens else 0.0
        worst, agreed, total = max(worst, diff), agreed + row_agreed, total + len(ref.tokens)
        same_prompt = ref.prompt_ids == got.prompt_ids
        rows.append(
            {
                "prompt": prompt,
                "prompt_ids_match": same_prompt,
                "tokens_match": same_prompt and ref.tokens == got.tokens,
                "reference": tokenizer.decode(ref.tokens, skip_special_tokens=True),
                "exported": tokenizer.decode(got.tokens, skip_special_tokens=True),
                "tokens_agreed": row_agreed,
                "tokens": len(ref.tokens),
                "max_logit_diff": diff,
                "diagnosis": diagnose(ref, got, picks, forced_ref, gguf_type),
            }
        )
    agreement = agreed / total if total else 1.0
    metadata_intact = all(r["prompt_ids_match"] for r in rows)
    return {
        "type": gguf_type,
        "verified": metadata_intact and agreement >= agreement_floor(gguf_type),
        "prompts": len(rows),
        "prompts_matched": sum(r["tokens_match"] for r in rows),
        "tokens_agreed": agreed,
        "tokens": total,
        "token_agreement": agreement,
        "agreement_floor": agreement_floor(gguf_type),
        "max_logit_diff": worst,
        "dtype": str(reference.dtype).removeprefix("torch."),
        "rows": rows,
    }


def diagnose(ref: Trace, got: Trace, picks: list[int], forced_ref: torch.Tensor, gguf_type: str) -> str | None:
    """Why one prompt's answers differ, in terms a user can act on; None when they agree."""
    if ref.prompt_ids != got.prompt_ids:
        return "the prompt encodes differently: the tokenizer or chat template in the GGUF metadata is not the model's"
    if ref.tokens == got.tokens:
        return None
    shorter, longer = sorted((ref.tokens, got.tokens), key=len)
    if longer[: len(shorter)] == shorter:
        return "the answers stop at different points: the GGUF's EOS token is not the one the model stops with"
    first = next((i for i, (a, b) in enumerate(zip(ref.tokens, picks)) if a != b), None)
    if first is None:
        return f"every token agrees when both read the same text; the free-running answers part after a near-tie ({gguf_type} rounding)"
    top = forced_ref[first].topk(2).values
    return (
        f"at token {first + 1} the {gguf_type} weights pick another token; base + adapter's top two logits there "
        f"were {float(top[0] - top[1]):.3g} apart"
    )
