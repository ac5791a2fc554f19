"""Preference rows as DPO sees them: a prompt, a chosen and a rejected answer, tokenized as TRL does.

Rows come in the layouts ``ftapp.datasets.formats`` recognises as "preference": ``chosen`` and
``rejected`` (strings, one turn, or lists of turns) next to a ``prompt`` (text or turns), a sharegpt
``conversations`` or a ``messages`` column, or alone (TRL's implicit prompt: the turns both share).
A plain-column dataset with chosen/rejected may name its prompt with the prompt's input_template.

Tokens follow TRL 1.16's ``DPOTrainer._prepare_dataset``: text answers end in EOS; the prompt ends
where the tokenized prompt and prompt + answer diverge; chat turns go through the chat template
(without one, turns are rendered as plain text with ``PLAIN_ROLE_HEADERS``, as SFT renders them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase
from trl.data_utils import extract_prompt

from trainer.data.training_data import PLAIN_ROLE_HEADERS, SHAREGPT_ROLES
from trainer.protocol import DataSource
from trainer.protocol.template_fields import render_template

Turn = dict[str, str]


@dataclass(frozen=True)
class PreferenceCase:
    row_index: int  # position in the source
    input: str  # what people read: the prompt's last user turn, or the text prompt
    chosen: str
    rejected: str
    prompt: str | list[Turn]  # text, or chat turns rendered with the chat template
    conversational: bool


def preference_cases(
    rows: datasets.Dataset, indices: list[int], data: DataSource, tokenizer: PreTrainedTokenizerBase
) -> list[PreferenceCase]:
    cases = []
    for index, row in zip(indices, rows.select(indices)):
        try:
            cases.append(_case(index, row, data, bool(tokenizer.chat_template)))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"dataset row {index}: {type(exc).__name__}: {exc}") from exc
    return cases


def pair_ids(tokenizer: PreTrainedTokenizerBase, case: PreferenceCase) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token ids, split where TRL's DPOTrainer splits them."""
    if case.conversational:
        assert isinstance(case.prompt, list)
        prompt = _chat_ids(tokenizer, case.prompt, generation_prompt=True)
        chosen = _chat_ids(tokenizer, [*case.prompt, _assistant(case.chosen)])
        rejected = _chat_ids(tokenizer, [*case.prompt, _assistant(case.rejected)])
    else:
        assert isinstance(case.prompt, str)
        eos = tokenizer.eos_token or ""
        prompt, chosen, rejected = (
            list(tokenizer(text)["input_ids"])
            for text in (case.prompt, case.prompt + _ending(case.chosen, eos), case.prompt + _ending(case.rejected, eos))
        )
    length = min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))
    return prompt[:length], chosen[length:], rejected[length:]


def _case(index: int, row: dict[str, Any], data: DataSource, has_template: bool) -> PreferenceCase:
    chosen, rejected = _answer(row["chosen"]), _answer(row["rejected"])
    prompt = _prompt(row, data)
    if prompt is None:  # implicit: the turns (or the text) both answers start with
        if isinstance(chosen, str) != isinstance(rejected, str):
            raise ValueError("chosen and rejected must both be text or both be conversations")
        if isinstance(chosen, str):
            assert isinstance(rejected, str)
            shared = os.path.commonprefix([chosen, rejected])
            prompt, chosen, rejected = shared, chosen[len(shared) :], rejected[len(shared) :]
        else:
            example = extract_prompt({"chosen": chosen, "rejected": rejected})
            prompt, chosen, rejected = example["prompt"], example["chosen"], example["rejected"]
        if not prompt:
            raise ValueError("no prompt: give a prompt, conversations or messages column, or answers that share their first turns")
    chosen_text, rejected_text = _last_content(chosen), _last_content(rejected)
    if isinstance(prompt, str):
        return PreferenceCase(index, prompt, chosen_text, rejected_text, prompt, False)
    shown = next((t["content"] for t in reversed(prompt) if t["role"] == "user"), prompt[-1]["content"])
    if has_template:
        return PreferenceCase(index, shown, chosen_text, rejected_text, prompt, True)
    rendered = "".join(_header(t["role"]) + t["content"] + "\n\n" for t in prompt) + _header("assistant")
    return PreferenceCase(index, shown, chosen_text, rejected_text, rendered, False)


def _prompt(row: dict[str, Any], data: DataSource) -> str | list[Turn] | None:
    if row.get("prompt") is not None:
        value = row["prompt"]
        return value if isinstance(value, str) else _turns(value)
    for column in ("conversations", "messages"):
        if row.get(column):
            turns = _turns(row[column])
            if row.get("system") and not any(t["role"] == "system" for t in turns):
                turns.insert(0, {"role": "system", "content": str(row["system"])})
            return turns
    if data.input_template:
        return render_template(data.input_template, row)
    return None


def _answer(value: Any) -> str | list[Turn]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # one turn: sharegpt's {"from", "value"} or {"role", "content"}
        return _turns([value])
    if isinstance(value, list):
        return _turns(value)
    raise TypeError(f"expected text or turns, got {type(value).__name__}")


def _turns(value: list[Any]) -> list[Turn]:
    turns = []
    for turn in value:
        if not isinstance(turn, dict):
            raise TypeError(f"expected a turn (a dict), got {type(turn).__name__}")
        speaker = turn.get("role") if turn.get("role") is not None else turn.get("from")
        role = SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise ValueError(f"unknown speaker {speaker!r}; expected one of {', '.join(SHAREGPT_ROLES)}")
        content = turn.get("content") if turn.get("content") is not None else turn.get("value")
        turns.append({"role": role, "content": "" if content is None else str(content)})
    return turns


def _last_content(answer: str | list[Turn]) -> str:
    if isinstance(answer, str):
        return answer
    if not answer:
        raise ValueError("an empty answer")
    return answer[-1]["content"]


def _assistant(text: str) -> Turn:
    return {"role": "assistant", "content": text}


def _chat_ids(tokenizer: PreTrainedTokenizerBase, turns: list[Turn], generation_prompt: bool = False) -> list[int]:
    encoded = tokenizer.apply_chat_template(turns, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def _ending(text: str, eos: str) -> str:
    return text if not eos or text.endswith(eos) else text + eos


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _header(role: str) -> str:
    return PLAIN_ROLE_HEADERS.get(role) or f"### {role.title()}:\n"
