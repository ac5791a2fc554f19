"""Greedy generations on a few held-out rows at the end of a run: a first look at what was learned.

Prompts are tokenized the way TRL tokenized them for training (the tokenizer adds BOS to text; a
chat template renders its own special tokens), so the model sees the context it was trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.data.training_data import SampleCase

MAX_NEW_TOKENS = 32  # enough for a label or a sentence; a sample is a glance, not an evaluation


@torch.no_grad()
def generate_samples(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cases: list[SampleCase], max_new_tokens: int = MAX_NEW_TOKENS
) -> list[dict[str, Any]]:
    model.eval()
    rows = []
    for case in cases:
        if isinstance(case.prompt, str):
            inputs = tokenizer(case.prompt, return_tensors="pt")
        else:
            inputs = tokenizer.apply_chat_template(case.prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        inputs = inputs.to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        rows.append({"input": case.input, "reference": case.reference, "output": answer.strip()})
    return rows
