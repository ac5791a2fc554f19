"""SFT rows tokenized as TRL's SFTTrainer tokenizes them, in batches rather than one row at a time.

TRL 1.16's ``SFTTrainer._prepare_dataset`` appends EOS, tokenizes and builds labels in per-row
``datasets.map`` passes: 4.0 s of an 8B run's 15.6 s to first loss for 2,000 rows on the H200.
Given a dataset that already has ``input_ids`` and ``labels`` it skips those passes and only
truncates, drops fully masked rows, packs and shuffles, as always. ``tokenize_rows`` adds those two
columns, computed as TRL 1.16 computes them (EOS on text answers; a text or chat prompt-completion
completion starting where the tokenized prompt and prompt + completion diverge; TRL's training chat
template when it patches one in for ``assistant_only_loss``; labels -100 outside the completion
mask (with ``completion_only_loss``) and the assistant mask), but with one tokenizer call per batch
of rows. tests/trainer/test_tokenized_rows.py checks the result against TRL's own, row by row.

What it does not reproduce exactly it leaves to TRL: other columns (tools, images, template
kwargs), processors, settings with which TRL changes the tokenizer first (``eos_token``,
``chat_template_path``), and rows without an assistant token, for which TRL raises its own error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import datasets
from datasets.fingerprint import generate_random_fingerprint
from transformers import PreTrainedTokenizerBase
from trl import SFTConfig
from trl.chat_template_utils import get_training_chat_template, has_generation_markers
from trl.data_utils import common_prefix_length, is_conversational

IGNORED = -100  # the label of a token that carries no loss
PARALLELISM = "TOKENIZERS_PARALLELISM"  # read by the Rust tokenizer at each batch call
BATCH_ROWS = 1000  # rows per tokenizer call: fast, and the encodings of a large dataset are not all held at once

log = logging.getLogger(__name__)


def tokenize_rows(rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, args: SFTConfig) -> datasets.Dataset:
    """``rows`` with the ``input_ids`` and ``labels`` TRL's ``SFTTrainer(args=args)`` would give them; ``rows``
    as they are where TRL must prepare them itself. The original columns stay: TRL reads them to decide the loss."""
    if not _reproducible(rows, tokenizer, args):
        return rows
    columns = rows.to_dict()  # column -> values, as the rows TRL's per-row passes are given
    with _tokenizer_threads():
        if set(columns) == {"prompt", "completion"}:
            tokenized = _prompt_completion(columns, is_conversational(rows[0]), tokenizer, args)
        elif set(columns) == {"messages"} and is_conversational(rows[0]):
            tokenized = _conversations(columns["messages"], tokenizer, args)
        elif set(columns) == {args.dataset_text_field}:
            tokenized = _texts(columns[args.dataset_text_field], tokenizer)
        else:
            tokenized = None
    if tokenized is None:
        return rows
    input_ids, labels = tokenized
    # A random fingerprint: datasets would otherwise hash every token id with dill (4 s for 2,000 rows). It only
    # keeps TRL's later passes from reusing a cache, and rows built in memory have none.
    with_ids = rows.add_column("input_ids", input_ids, new_fingerprint=generate_random_fingerprint())
    return with_ids.add_column("labels", labels, new_fingerprint=generate_random_fingerprint())


@contextmanager
def _tokenizer_threads() -> Iterator[None]:
    """The Rust tokenizer's threads on for these batches (1.5 s instead of 2.7 s for 2,000 rows on 2 cores).

    ``trainer.run_process`` turns them off for the whole process because dataloader workers fork later; they
    are off again before that, and a child reads "false" and never uses the parent's (absent) threads."""
    before = os.environ.get(PARALLELISM)
    os.environ[PARALLELISM] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PARALLELISM]
        else:
            os.environ[PARALLELISM] = before


def _reproducible(rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, args: SFTConfig) -> bool:
    return (
        isinstance(rows, datasets.Dataset)
        and len(rows) > 0
        and rows.format["type"] is None
        and isinstance(tokenizer, PreTrainedTokenizerBase)
        and tokenizer.eos_token is not None
        and args.eos_token is None
        and args.pad_token is None
        and args.chat_template_path is None
        and not (isinstance(args.dataset_kwargs, dict) and args.dataset_kwargs.get("skip_prepare_dataset", False))
    )


def _prompt_completion(
    columns: dict[str, list[Any]], chat: bool, tokenizer: PreTrainedTokenizerBase, args: SFTConfig
) -> tuple[list[list[int]], list[list[int]]] | None:
    prompts, completions = columns["prompt"], columns["completion"]
    if chat:
        template = _chat_template(tokenizer, args)
        prompt_ids = _chat_ids(tokenizer, prompts, template, add_generation_prompt=True)["input_ids"]
        full = _chat_ids(tokenizer, [p + c for p, c in zip(prompts, completions)], template, args.assistant_only_loss)
    else:
        eos = tokenizer.eos_token
        prompt_ids = _text_ids(tokenizer, prompts)["input_ids"]
        full = _text_ids(tokenizer, [p + _with_eos(c, eos) for p, c in zip(prompts, completions)])
    input_ids, assistant_masks = full["input_ids"], full.get("assistant_masks")
    if assistant_masks is not None and not all(1 in mask for mask in assistant_masks):
        return None
    # TRL's default: the loss on the completion only when the rows are prompt-completion, as these are.
    only_completion = True if args.completion_only_loss is None else args.completion_only_loss
    labels, diverged = [], False
    for row, (prompt, ids) in enumerate(zip(prompt_ids, input_ids)):
        prompt_length = common_prefix_length(prompt, ids)
        diverged = diverged or prompt_length < len(prompt)
        start = prompt_length if only_completion else 0
        masked = [IGNORED] * start + ids[start:]
        labels.append(masked if assistant_masks is None else _mask(masked, assistant_masks[row]))
    if diverged:
        # TRL warns too, once: the training context differs from the one the model is prompted with.
        log.warning("a tokenized prompt is not a prefix of its prompt + completion; the completion starts where they diverge")
    return input_ids, labels


def _conversations(
    conversations: list[list[dict[str, Any]]], tokenizer: PreTrainedTokenizerBase, args: SFTConfig
) -> tuple[list[list[int]], list[list[int]]] | None:
    tokenized = _chat_ids(tokenizer, conversations, _chat_template(tokenizer, args), args.assistant_only_loss)
    input_ids, assistant_masks = tokenized["input_ids"], tokenized.get("assistant_masks")
    if assistant_masks is None:
        return input_ids, [list(ids) for ids in input_ids]
    if not all(1 in mask for mask in assistant_masks):
        return None
    return input_ids, [_mask(ids, mask) for ids, mask in zip(input_ids, assistant_masks)]


def _texts(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> tuple[list[list[int]], list[list[int]]]:
    eos = tokenizer.eos_token
    input_ids = _text_ids(tokenizer, [_with_eos(text, eos) for text in texts])["input_ids"]
    return input_ids, [list(ids) for ids in input_ids]


def _chat_template(tokenizer: PreTrainedTokenizerBase, args: SFTConfig) -> str | None:
    """The template TRL renders with: its patched training template when assistant-only loss needs one."""
    if args.assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        return get_training_chat_template(tokenizer)
    return None


def _text_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> dict[str, list[list[int]]]:
    ids: list[list[int]] = []
    for batch in _batches(texts):
        ids += tokenizer(text=batch)["input_ids"]
    return {"input_ids": ids}


def _chat_ids(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[dict[str, Any]]],
    template: str | None,
    assistant_mask: bool = False,
    *,
    add_generation_prompt: bool = False,
) -> dict[str, list[list[int]]]:
    """What TRL's per-row ``apply_chat_template`` returns (``tools`` None: these rows have none), per batch of rows."""
    kwargs: dict[str, Any] = {"chat_template": template, "tools": None, "tokenize": True, "return_dict": True}
    if add_generation_prompt:
        kwargs["add_generation_prompt"] = True
    else:
        kwargs["return_assistant_tokens_mask"] = assistant_mask
    out: dict[str, list[list[int]]] = {"input_ids": []}
    if assistant_mask:
        out["assistant_masks"] = []
    for batch in _batches(conversations):
        encoded = tokenizer.apply_chat_template(batch, **kwargs)
        for key in out:
            out[key] += encoded[key]
    return out


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH_ROWS):
        yield items[start : start + BATCH_ROWS]


def _with_eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos


def _mask(labels: list[int], assistant_mask: list[int]) -> list[int]:
    return [label if bit else IGNORED for label, bit in zip(labels, assistant_mask)]
