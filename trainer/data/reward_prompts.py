"""GRPO's dataset: each row's prompt, rendered exactly as SFT and the evaluation render it, with its reference.

``trainer.data.training_data.evaluation_cases`` gives prompt + reference for every layout that has an
answer (input_template + completion_template, alpaca, messages, sharegpt), so an SFT adapter that
GRPO continues sees the prompts it was trained on, and the evaluation scores the same references the
rewards compared with. A prompt with only a ``prompt_template`` has no answer part: its rows are
prompted with the whole rendered template and get no reference (format rewards only).
Columns: ``prompt`` (text or turns), ``reference`` (text or None) and ``row`` (the source row as
JSON, for custom rewards); TRL hands the last two to every reward function.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import datasets
from transformers import PreTrainedTokenizerBase

from trainer.data.loading import DataSplit
from trainer.data.training_data import SampleCase, evaluation_cases
from trainer.protocol import DataSource
from trainer.protocol.template_fields import render_template


@dataclass(frozen=True)
class RewardPrompts:
    train: datasets.Dataset
    validation: datasets.Dataset  # may have no rows
    samples: list[SampleCase]  # a few validation rows for the final greedy answers


def build_reward_prompts(
    rows: datasets.Dataset, split: DataSplit, data: DataSource, tokenizer: PreTrainedTokenizerBase, sample_limit: int = 3
) -> RewardPrompts:
    if data.format == "preference":
        raise ValueError("GRPO samples its own answers to prompts; preference pairs (chosen/rejected) train with DPO")
    train = _examples(rows, split.train_indices, data, tokenizer)
    validation = _examples(rows, sorted(split.validation_indices), data, tokenizer)
    samples = [
        SampleCase(_shown(example["prompt"]), example["reference"] or "", example["prompt"]) for example in validation[:sample_limit]
    ]
    return RewardPrompts(datasets.Dataset.from_list(train), datasets.Dataset.from_list(validation), samples)


def _examples(rows: datasets.Dataset, indices: list[int], data: DataSource, tokenizer: PreTrainedTokenizerBase) -> list[dict]:
    source = rows.select(indices)
    if data.prompt_template and not (data.input_template and data.completion_template):
        template = data.prompt_template
        return [{"prompt": render_template(template, row), "reference": None, "row": json.dumps(row, default=str)} for row in source]
    cases = evaluation_cases(rows, indices, data, tokenizer)
    return [{"prompt": case.prompt, "reference": case.reference, "row": json.dumps(row, default=str)} for case, row in zip(cases, source)]


def _shown(prompt: str | list[dict[str, str]]) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]
