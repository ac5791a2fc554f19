"""Rows to the TRL dataset formats SFT trains on, and which tokens carry the loss.

Which layout a run gets:

* ``input_template`` + ``completion_template`` (a prompt chosen for plain columns) → TRL
  prompt-completion text; the loss is on the completion (``completion_only_loss``). Trailing
  spaces of the prompt move to the completion (see ``prompt_at_token_boundary``).
* ``prompt_template`` alone → language-modeling text; the loss is on every token.
* ``messages`` / ``sharegpt`` / ``alpaca`` rows become conversations. With a chat template that has
  (or TRL can patch in) ``{% generation %}`` markers, they train as conversations with the loss on
  every assistant turn. Without markers, TRL cannot tell assistant tokens apart, so each becomes
  conversational prompt-completion: the turns before the last assistant turn are the prompt and
  the last assistant turn the completion. Without any chat template they are rendered as plain
  prompt-completion text with ``PLAIN_ROLE_HEADERS``.

TRL appends EOS to text completions and the chat template closes each turn, so every completion
ends in a stop token the model learns to emit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import get_training_chat_template

from trainer.data.loading import DataSplit
from trainer.protocol import DataSource
from trainer.protocol.template_fields import render_template

PROMPT_COMPLETION = "prompt_completion"  # {"prompt": str, "completion": str}
TEXT = "text"  # {"text": str}
CHAT = "chat"  # {"messages": [turn, ...]}
CHAT_PROMPT_COMPLETION = "chat_prompt_completion"  # {"prompt": [turn, ...], "completion": [assistant turn]}

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
PLAIN_ROLE_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}

Turn = dict[str, str]


@dataclass(frozen=True)
class TrainingData:
    train: datasets.Dataset
    validation: datasets.Dataset  # may have no rows (train_split of 1)
    layout: str
    completion_only_loss: bool | None  # None: TRL's default for the layout
    assistant_only_loss: bool


@dataclass(frozen=True)
class SampleCase:
    """One validation row for a generation sample: what to show, what is right, what to prompt with."""

    input: str
    reference: str
    prompt: str | list[Turn]


def build_training_data(
    rows: datasets.Dataset,
    split: DataSplit,
    data: DataSource,
    tokenizer: PreTrainedTokenizerBase,
    *,
    completion_only_loss: bool,
    assistant_only_loss: bool,
) -> TrainingData:
    layout, convert = _choose_layout(data, tokenizer, assistant_only_loss)
    train = _convert(rows, split.train_indices, convert)
    validation = _convert(rows, split.validation_indices, convert)
    if layout == CHAT:
        return TrainingData(train, validation, layout, None, assistant_only_loss)
    if layout == TEXT:
        return TrainingData(train, validation, layout, None, False)
    # Conversational prompt-completion exists only to keep the loss on the assistant's answer.
    only_completion = True if layout == CHAT_PROMPT_COMPLETION else completion_only_loss
    return TrainingData(train, validation, layout, only_completion, False)


@dataclass(frozen=True)
class EvalCase:
    """One row to evaluate: what to show, the reference, the prompt, and the answer as it was trained."""

    row_index: int  # position in the source
    input: str
    reference: str  # stripped; what the metrics compare with
    prompt: str | list[Turn]
    answer: str  # text layouts: the completion with its leading space; chat: the assistant turn's content


def evaluation_cases(rows: datasets.Dataset, indices: list[int], data: DataSource, tokenizer: PreTrainedTokenizerBase) -> list[EvalCase]:
    """The rows at ``indices`` prompted exactly as training prompted them (same layout choice)."""
    layout, convert = _choose_layout(data, tokenizer, assistant_only_loss=True)
    if layout == TEXT:
        raise ValueError(
            "the prompt has only a prompt_template, so rows have no reference answer to compare with; "
            "give the prompt an input_template and a completion_template"
        )
    cases = []
    for index, row in zip(indices, rows.select(indices)):
        try:
            example = convert(row)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"dataset row {index}: {type(exc).__name__}: {exc}") from exc
        if layout == PROMPT_COMPLETION:
            cases.append(EvalCase(index, example["prompt"], example["completion"].strip(), example["prompt"], example["completion"]))
            continue
        prompt, answer = (
            (example["prompt"], example["completion"][0]) if layout == CHAT_PROMPT_COMPLETION else split_last_answer(example["messages"])
        )
        cases.append(EvalCase(index, prompt[-1]["content"], answer["content"].strip(), prompt, answer["content"]))
    return cases


def prompt_at_token_boundary(prompt: str, completion: str) -> dict[str, str]:
    """A text prompt-completion pair with the prompt's trailing spaces moved to the completion.

    Byte-level BPE and SentencePiece tokenizers attach a space to the word after it, so "Intent: "
    alone ends in a lone-space token that "Intent: cancel" never contains. TRL then trains on
    "Intent:" + " cancel" while generation from the raw prompt feeds the lone space, a context the
    model never saw, and it answers garbage ("l_refund"). Whoever prompts the trained model with
    this template (evaluation, serving) must strip the trailing spaces the same way.
    """
    stripped = prompt.rstrip(" ")
    return {"prompt": stripped, "completion": prompt[len(stripped) :] + completion}


def sample_cases(validation: datasets.Dataset, layout: str, limit: int = 3) -> list[SampleCase]:
    """The first ``limit`` validation rows as generation prompts; none for plain text (no answer part)."""
    cases = []
    for example in validation.select(range(min(limit, len(validation)))):
        if layout == PROMPT_COMPLETION:
            cases.append(SampleCase(example["prompt"], example["completion"].strip(), example["prompt"]))
        elif layout == CHAT_PROMPT_COMPLETION:
            prompt = example["prompt"]
            cases.append(SampleCase(prompt[-1]["content"], example["completion"][0]["content"], prompt))
        elif layout == CHAT:
            prompt, answer = split_last_answer(example["messages"])
            cases.append(SampleCase(prompt[-1]["content"], answer["content"], prompt))
    return cases


def split_last_answer(turns: list[Turn]) -> tuple[list[Turn], Turn]:
    """The turns before the last assistant turn, and that turn; later turns are dropped."""
    last = max((i for i, turn in enumerate(turns) if turn["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError("the conversation has no assistant turn to learn from")
    if last == 0:
        raise ValueError("the conversation starts with the assistant turn, so there is no prompt for it")
    return turns[:last], turns[last]


def _choose_layout(
    data: DataSource, tokenizer: PreTrainedTokenizerBase, assistant_only_loss: bool
) -> tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    if data.input_template and data.completion_template:
        prompt, completion = data.input_template, data.completion_template
        return PROMPT_COMPLETION, lambda row: prompt_at_token_boundary(_render(prompt, row), _render(completion, row))
    if data.prompt_template:
        text = data.prompt_template
        return TEXT, lambda row: {"text": _render(text, row)}
    to_turns = {"messages": _messages_turns, "sharegpt": _sharegpt_turns, "alpaca": _alpaca_turns}.get(data.format)
    if to_turns is None:
        if data.format == "preference":
            raise ValueError("preference data (chosen/rejected) trains with DPO, not SFT")
        raise ValueError(f"{data.format!r} data needs a prompt: set input_template and completion_template (or prompt_template)")
    if not tokenizer.chat_template:
        return PROMPT_COMPLETION, lambda row: _plain_prompt_completion(to_turns(row))
    if not assistant_only_loss:
        return CHAT, lambda row: {"messages": to_turns(row)}
    if _can_mask_assistant_turns(tokenizer):
        return CHAT, lambda row: {"messages": to_turns(row)}
    return CHAT_PROMPT_COMPLETION, lambda row: _chat_prompt_completion(to_turns(row))


def _can_mask_assistant_turns(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether TRL can mark assistant tokens: the template has generation markers or TRL knows a patch."""
    try:
        get_training_chat_template(tokenizer)  # None when the template is fine as it is
    except ValueError:
        return False
    return True


def _convert(rows: datasets.Dataset, indices: list[int], convert: Callable[[dict[str, Any]], dict[str, Any]]) -> datasets.Dataset:
    examples = []
    for index, row in zip(indices, rows.select(indices)):
        try:
            examples.append(convert(row))
        except (KeyError, ValueError, TypeError) as exc:
            # Name the source row: the message alone would not say which of thousands is wrong.
            raise ValueError(f"dataset row {index}: {type(exc).__name__}: {exc}") from exc
    return datasets.Dataset.from_list(examples)


def _render(template: str, row: dict[str, Any]) -> str:
    return render_template(template, row)  # plain {column} fields only: never str.format's specs


def _content(value: Any) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text ones
        return "".join(part.get("text") or "" for part in value if isinstance(part, dict))
    return "" if value is None else str(value)


def _messages_turns(row: dict[str, Any]) -> list[Turn]:
    # Extra keys (name, weight, tool_calls...) are dropped: Arrow fills absent ones with None,
    # which chat templates would render.
    return [{"role": str(turn["role"]), "content": _content(turn.get("content"))} for turn in row["messages"]]


def _sharegpt_turns(row: dict[str, Any]) -> list[Turn]:
    turns = []
    for turn in row["conversations"]:
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ValueError(f"unknown sharegpt speaker {turn['from']!r}; expected one of {', '.join(SHAREGPT_ROLES)}")
        turns.append({"role": role, "content": _content(turn.get("value"))})
    system = row.get("system")
    if system and not any(turn["role"] == "system" for turn in turns):
        turns.insert(0, {"role": "system", "content": str(system)})
    return turns


def _alpaca_turns(row: dict[str, Any]) -> list[Turn]:
    turns: list[Turn] = []
    if row.get("system"):
        turns.append({"role": "system", "content": str(row["system"])})
    for question, answer in row.get("history") or []:
        turns += [{"role": "user", "content": str(question)}, {"role": "assistant", "content": str(answer)}]
    request = str(row["instruction"])
    if row.get("input"):
        request += "\n\n" + str(row["input"])
    turns += [{"role": "user", "content": request}, {"role": "assistant", "content": _content(row["output"])}]
    return turns


def _chat_prompt_completion(turns: list[Turn]) -> dict[str, Any]:
    prompt, answer = split_last_answer(turns)
    return {"prompt": prompt, "completion": [answer]}


def _plain_prompt_completion(turns: list[Turn]) -> dict[str, str]:
    prompt, answer = split_last_answer(turns)
    rendered = "".join(_plain_header(turn["role"]) + turn["content"] + "\n\n" for turn in prompt)
    return prompt_at_token_boundary(rendered + _plain_header("assistant"), answer["content"])


def _plain_header(role: str) -> str:
    return PLAIN_ROLE_HEADERS.get(role) or f"### {role.title()}:\n"
