"""Rows to training examples: the dataset layouts, and which tokens carry the loss."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import AutoTokenizer

from trainer.cancellation import Cancellation
from trainer.data.loading import split_rows
from trainer.data.training_data import (
    CHAT,
    CHAT_PROMPT_COMPLETION,
    PROMPT_COMPLETION,
    build_training_data,
    prompt_at_token_boundary,
    sample_cases,
)
from trainer.protocol import DataSource

ALPACA = {"instruction": "Name the intent.", "input": "where is my order #12345", "output": "track_order", "system": ""}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "refund please"},
        {"from": "gpt", "value": "get_refund"},
    ]
}
MESSAGES = {
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "cancel order #1"},
        {"role": "assistant", "content": "cancel_order"},
    ]
}


class CollectedEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, /, **data: Any) -> None:
        self.events.append((kind, data))


@pytest.fixture(scope="module")
def tokenizer(demo_kit):
    return AutoTokenizer.from_pretrained(demo_kit.model_dir)


def _build(rows: list[dict], fmt: str, tokenizer, assistant_only_loss: bool = True):
    split = split_rows(len(rows), fraction=1.0, train_split=1.0, seed=0)
    return build_training_data(
        datasets.Dataset.from_list(rows),
        split,
        DataSource(kind="project_jsonl", format=fmt),
        tokenizer,
        completion_only_loss=True,
        assistant_only_loss=assistant_only_loss,
    )


def test_alpaca_sharegpt_and_messages_become_conversations_for_a_chat_tokenizer(tokenizer) -> None:
    # The demo chat template has no {% generation %} markers, so the last answer becomes the completion.
    alpaca = _build([ALPACA], "alpaca", tokenizer)
    assert alpaca.layout == CHAT_PROMPT_COMPLETION and alpaca.completion_only_loss is True
    assert alpaca.train[0]["prompt"] == [{"role": "user", "content": "Name the intent.\n\nwhere is my order #12345"}]
    assert alpaca.train[0]["completion"] == [{"role": "assistant", "content": "track_order"}]

    sharegpt = _build([SHAREGPT], "sharegpt", tokenizer).train[0]
    assert [turn["role"] for turn in sharegpt["prompt"]] == ["system", "user"]

    messages = _build([MESSAGES], "messages", tokenizer).train[0]
    assert [turn["content"] for turn in messages["prompt"]] == ["hi", "hello", "cancel order #1"]
    assert messages["completion"] == [{"role": "assistant", "content": "cancel_order"}]

    whole = _build([MESSAGES], "messages", tokenizer, assistant_only_loss=False)
    assert whole.layout == CHAT and whole.train[0]["messages"][-1]["content"] == "cancel_order"


def test_without_a_chat_template_conversations_become_plain_prompt_completion(tokenizer) -> None:
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    built = _build([SHAREGPT], "sharegpt", plain)
    assert built.layout == PROMPT_COMPLETION
    assert built.train[0] == {
        "prompt": "### System:\nBe brief.\n\n### User:\nrefund please\n\n### Assistant:\n",
        "completion": "get_refund",
    }
    (case,) = sample_cases(built.train, built.layout)
    assert (case.reference, case.prompt) == ("get_refund", built.train[0]["prompt"])


def test_a_prompt_ending_in_a_space_gives_the_space_to_the_completion(tokenizer) -> None:
    raw_prompt, completion = "Request: cancel my ticket\nIntent: ", "cancel_ticket"
    moved = prompt_at_token_boundary(raw_prompt, completion)
    assert moved == {"prompt": "Request: cancel my ticket\nIntent:", "completion": " cancel_ticket"}

    def is_prefix(prompt: str, completion: str) -> bool:
        ids = tokenizer(prompt).input_ids
        return tokenizer(prompt + completion).input_ids[: len(ids)] == ids

    # Why: the space merges into the next word, so the raw prompt's last token never occurs in training.
    assert not is_prefix(raw_prompt, completion)
    assert is_prefix(moved["prompt"], moved["completion"])
    (case,) = sample_cases(datasets.Dataset.from_list([moved]), PROMPT_COMPLETION)
    assert (case.prompt, case.reference) == (moved["prompt"], "cancel_ticket")


def test_data_the_trainer_cannot_learn_from_is_refused_with_the_row(tokenizer) -> None:
    with pytest.raises(ValueError, match="needs a prompt"):
        _build([{"a": 1}], "plain", tokenizer)
    with pytest.raises(ValueError, match="DPO"):
        _build([{"chosen": "a", "rejected": "b"}], "preference", tokenizer)
    unanswered = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(ValueError, match="dataset row 1: .*no assistant turn"):
        _build([MESSAGES, unanswered], "messages", tokenizer)


def _labelled(spec) -> tuple[dict, Any]:
    """The first training example exactly as the Trainer will see it (tokenized, labels built)."""
    from trainer.recipes.sft import setup

    run = setup(spec, CollectedEvents(), Cancellation())
    return run.trainer.train_dataset[0], run


def test_prompt_template_data_trains_on_the_completion_only(make_spec, tmp_path: Path, tokenizer) -> None:
    spec = make_spec(tmp_path / "run", cpu_threads=None)
    example, run = _labelled(spec)
    source = run.data.train[0]
    prompt_ids = tokenizer(source["prompt"]).input_ids  # BOS + prompt, as TRL tokenizes it
    completion_ids = tokenizer(source["completion"], add_special_tokens=False).input_ids
    assert example["input_ids"] == prompt_ids + completion_ids + [tokenizer.eos_token_id]
    assert example["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
    # The answer and the EOS that ends it are learned, nothing else.
    assert example["labels"][len(prompt_ids) :] == completion_ids + [tokenizer.eos_token_id]
    assert (Path(spec.run_dir) / "split.json").is_file()


def test_messages_data_trains_on_the_last_assistant_turn_only(make_spec, messages_dataset: Path, tmp_path: Path, tokenizer) -> None:
    spec = make_spec(
        tmp_path / "run",
        cpu_threads=None,
        data={
            "path": str(messages_dataset),
            "format": "messages",
            "prompt_template": None,
            "input_template": None,
            "completion_template": None,
        },
    )
    example, run = _labelled(spec)
    assert run.data.layout == CHAT_PROMPT_COMPLETION
    answer = run.data.train[0]["completion"][0]["content"]
    learned = [token for token in example["labels"] if token != -100]
    # The template closes the assistant turn with EOS and a newline; the prompt turns are masked.
    assert (
        learned
        == tokenizer(answer, add_special_tokens=False).input_ids
        + [tokenizer.eos_token_id]
        + tokenizer("\n", add_special_tokens=False).input_ids
    )
    assert example["input_ids"].count(tokenizer.bos_token_id) == 1
    assert torch.tensor(example["labels"][: -len(learned)]).eq(-100).all()
