"""Preference rows to the TRL datasets DPO trains on, read exactly as the evaluation reads them.

``trainer.data.preference_pairs`` maps every preference layout (prompt / chosen / rejected as text or
turns, sharegpt ``conversations`` + chosen/rejected turns as in LLaMA-Factory's ``dpo_en_demo.json``,
``messages``, an implicit prompt, an input_template over plain columns) to one ``PreferenceCase``;
an adapter is then scored on the same prompts and answers it was trained on. Here each case becomes
TRL's standard format (text) or its conversational format (turns, rendered by the chat template).
Without a chat template the turns arrive already rendered as text with SFT's plain role headers,
so a run that continues an SFT adapter sees the prompt format SFT taught.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from trainer.data.loading import DataSplit
from trainer.data.preference_pairs import PreferenceCase, preference_cases
from trainer.data.training_data import SampleCase
from trainer.protocol import DataSource

STANDARD = "preference"  # {"prompt": str, "chosen": str, "rejected": str}
CONVERSATIONAL = "chat_preference"  # {"prompt": [turn, ...], "chosen": [assistant turn], "rejected": [assistant turn]}


@dataclass(frozen=True)
class PreferenceData:
    train: datasets.Dataset
    validation: datasets.Dataset  # may have no rows
    train_cases: list[PreferenceCase]
    validation_cases: list[PreferenceCase]
    layout: str  # STANDARD or CONVERSATIONAL


def build_preference_data(rows: datasets.Dataset, split: DataSplit, data: DataSource, tokenizer: PreTrainedTokenizerBase) -> PreferenceData:
    train_cases = preference_cases(rows, split.train_indices, data, tokenizer)
    validation_cases = preference_cases(rows, sorted(split.validation_indices), data, tokenizer)
    if len({case.conversational for case in train_cases + validation_cases}) > 1:
        # TRL tokenizes a dataset one way: text pairs and conversations cannot train together.
        raise ValueError("the rows mix plain-text and conversational preference pairs; use one shape for all rows")
    layout = CONVERSATIONAL if train_cases[0].conversational else STANDARD
    return PreferenceData(_dataset(train_cases), _dataset(validation_cases), train_cases, validation_cases, layout)


def trl_example(case: PreferenceCase) -> dict[str, Any]:
    if case.conversational:
        return {
            "prompt": case.prompt,
            "chosen": [{"role": "assistant", "content": case.chosen}],
            "rejected": [{"role": "assistant", "content": case.rejected}],
        }
    return {"prompt": case.prompt, "chosen": case.chosen, "rejected": case.rejected}


def preference_sample_cases(cases: list[PreferenceCase], limit: int = 3) -> list[SampleCase]:
    """The first ``limit`` validation prompts, with the chosen answer as the reference."""
    return [SampleCase(case.input, case.chosen.strip(), case.prompt) for case in cases[:limit]]


def _dataset(cases: list[PreferenceCase]) -> datasets.Dataset:
    return datasets.Dataset.from_list([trl_example(case) for case in cases])
