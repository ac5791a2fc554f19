"""The checks every training recipe makes before it loads a model."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from trainer.model_loading import load_tokenizer
from trainer.protocol import ModelSource
from trainer.recipes.steps import check_tokenizer_reads

ROWS = datasets.Dataset.from_list([{"question": "w1 w2 w3", "answer": "w4"}, {"question": "w2 w2", "answer": "w1"}])


def word_tokenizer(directory: Path, model_type: str) -> Path:
    """A word-level tokenizer saved next to a config.json of ``model_type`` (no weights: none are read)."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": 4 + i for i in range(10)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>").save_pretrained(
        directory
    )
    (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    return directory


def test_a_tokenizer_that_reads_the_rows_passes(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(ModelSource(str(word_tokenizer(tmp_path / "llama", "llama"))))
    check_tokenizer_reads(tokenizer, ROWS, "llama")  # no error


def test_a_tokenizer_that_turns_the_rows_into_nothing_is_refused_before_training(tmp_path: Path) -> None:
    # transformers 5 loads a qwen2 directory's tokenizer as Qwen2Tokenizer whatever its files say; this
    # vocabulary then encodes to no tokens, and training would see end-of-text tokens alone.
    tokenizer = load_tokenizer(ModelSource(str(word_tokenizer(tmp_path / "qwen", "qwen2"))))
    assert tokenizer("w1 w2", add_special_tokens=False)["input_ids"] == []
    with pytest.raises(ValueError, match="turns the dataset's text into no tokens"):
        check_tokenizer_reads(tokenizer, ROWS, "qwen")
