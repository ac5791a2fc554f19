"""Verify an exported model: greedy answers to fixed prompts, compared with base + adapter's.

``python -m trainer.export.verify MODEL_DIR REFERENCE RESULT MAX_NEW_TOKENS DEVICE`` runs in a fresh
process, so it loads the export exactly as a user will: config, weights, tokenizer (its chat template)
and generation config (its EOS) from the exported directory alone. The reference traces were taken by
the export process from base + adapter before the merge. The export is verified when every prompt
encodes to the same ids and every greedy answer is token-for-token identical; the largest difference
between the two sides' logits, over the steps where both saw the same context, is reported as well.
A broken chat template shows up as different prompt ids, a wrong EOS as answers of different lengths.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from trainer.inference.generation import encode_prompt, generation_config
from trainer.model_loading import load_tokenizer
from trainer.protocol import ModelSource

# Fixed, so two exports of one adapter are checked alike; chat turns when the tokenizer has a chat template.
PROMPTS = (
    "Where is my order?",
    "Explain in one sentence what a LoRA adapter does.",
    "Reply politely to a customer whose package arrived damaged.",
    "List three colours.",
)
# Merging W + BA into bf16/fp16 weights rounds them: logits move by up to ~0.1-0.2, enough to flip near-ties.
ROUNDING_LOGIT_DIFF = 0.5


@dataclass
class Trace:
    prompt_ids: list[int]
    tokens: list[int]  # the greedy answer, its stop token included when generated
    logits: torch.Tensor  # (len(tokens), vocab), float32 on the CPU


def encode(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    if tokenizer.chat_template:
        return encode_prompt(tokenizer, [{"role": "user", "content": prompt}])
    return encode_prompt(tokenizer, prompt)


@torch.no_grad()
def greedy_traces(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int) -> list[Trace]:
    """One prompt at a time: no padding, so both sides compute exactly the same thing."""
    config = generation_config(
        model,
        tokenizer,
        {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens, "output_logits": True, "return_dict_in_generate": True},
    )
    traces = []
    for prompt in PROMPTS:
        ids = encode(tokenizer, prompt)
        inputs = torch.tensor([ids], device=model.device)
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
        tokens = out.sequences[0, len(ids) :].tolist()
        traces.append(Trace(ids, tokens, torch.stack(out.logits, dim=1)[0, : len(tokens)].float().cpu()))
    return traces


def save_traces(traces: list[Trace], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"prompt_ids": [t.prompt_ids for t in traces], "tokens": [t.tokens for t in traces], "logits": [t.logits for t in traces]}, path
    )


def load_traces(path: Path) -> list[Trace]:
    data = torch.load(path, weights_only=True)
    return [Trace(p, t, g) for p, t, g in zip(data["prompt_ids"], data["tokens"], data["logits"])]


def compare(reference: list[Trace], exported: list[Trace], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    rows, worst = [], 0.0
    for prompt, ref, got in zip(PROMPTS, reference, exported):
        same_prompt = ref.prompt_ids == got.prompt_ids
        diff = _max_logit_difference(ref, got) if same_prompt else None
        worst = max(worst, diff or 0.0)
        rows.append(
            {
                "prompt": prompt,
                "prompt_ids_match": same_prompt,
                "tokens_match": same_prompt and ref.tokens == got.tokens,
                "reference": tokenizer.decode(ref.tokens, skip_special_tokens=True),
                "exported": tokenizer.decode(got.tokens, skip_special_tokens=True),
                "max_logit_diff": diff,
                "diagnosis": diagnose(ref, got, diff),
            }
        )
    matched = sum(r["tokens_match"] for r in rows)
    return {"verified": matched == len(rows), "prompts": len(rows), "prompts_matched": matched, "max_logit_diff": worst, "rows": rows}


def diagnose(ref: Trace, got: Trace, diff: float | None) -> str | None:
    """Why one prompt's answers differ, in the terms a user can act on; None when they agree."""
    if ref.prompt_ids != got.prompt_ids:
        return "the prompt encodes differently: the exported tokenizer or chat template changed"
    if ref.tokens == got.tokens:
        return None
    shorter, longer = sorted((ref.tokens, got.tokens), key=len)
    if longer[: len(shorter)] == shorter:
        return "the answers stop at different points: check eos_token_id in generation_config.json and the tokenizer"
    first = next(i for i, (a, b) in enumerate(zip(ref.tokens, got.tokens)) if a != b)
    parted = f"the answers part at token {first + 1}, largest logit difference {diff or 0.0:.3g}"
    if diff is not None and diff <= ROUNDING_LOGIT_DIFF:
        return f"{parted}: as small as rounding the merged weights to the model's dtype makes it (near-tied tokens)"
    return f"{parted}: larger than rounding explains; the merged weights compute something else"


def _max_logit_difference(ref: Trace, got: Trace) -> float:
    """Over the steps both sides took from the same context: up to and including the first differing token."""
    steps = min(len(ref.tokens), len(got.tokens))
    same = next((i for i in range(steps) if ref.tokens[i] != got.tokens[i]), steps - 1)
    shown = min(same + 1, steps)
    if shown <= 0:
        return 0.0
    return float((ref.logits[:shown] - got.logits[:shown]).abs().max())


def verify(model_dir: Path, reference_path: Path, max_new_tokens: int, device: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": "auto"}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).eval()
    tokenizer = load_tokenizer(ModelSource(str(model_dir)))
    return compare(load_traces(reference_path), greedy_traces(model, tokenizer, max_new_tokens), tokenizer)


def main(argv: list[str]) -> int:
    model_dir, reference, result, max_new_tokens, device = argv
    outcome = verify(Path(model_dir), Path(reference), int(max_new_tokens), device)
    Path(result).write_text(json.dumps(outcome, indent=2), encoding="utf-8")
    print(
        f"verification: {outcome['prompts_matched']}/{outcome['prompts']} prompts identical, "
        f"max logit difference {outcome['max_logit_diff']:.3g}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
