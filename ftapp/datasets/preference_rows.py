"""Preference pairs (DPO data): the text of a row's chosen and rejected answers, and DS-007.

A preference row holds ``chosen`` and ``rejected`` next to its prompt (``prompt``, ``conversations``
or ``messages``, or none: TRL's implicit-prompt form). Each answer comes in one of three shapes:
plain text; one turn ``{"role", "content"}`` or ``{"from", "value"}`` (the sharegpt layout of
``dpo_en_demo.json``); or a list of such turns, whose assistant turns are the answer (the earlier
turns of an implicit-prompt row are its prompt, shared by both answers).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ftapp import rules
from ftapp.errors import Problem

ANSWERS = ("chosen", "rejected")
SHOWN_ROWS = 5  # the first few offending rows are named; the rest are counted
ASSISTANT_ROLES = ("assistant", "gpt", "model")


def _turn_text(turn: Any) -> str | None:
    if not isinstance(turn, dict):
        return None
    text = turn.get("content", turn.get("value"))
    return text if isinstance(text, str) else None


def answer_text(value: Any) -> str | None:
    """The answer's text, or None when the value is neither text nor turns."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _turn_text(value)
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return "\n".join(value)
        texts = [_turn_text(turn) for turn in value]
        if any(text is None for text in texts):
            return None
        roles = [turn.get("role", turn.get("from")) for turn in value]
        answers = [text for text, role in zip(texts, roles) if role in ASSISTANT_ROLES]
        return "\n".join(answers if answers else texts)  # type: ignore[arg-type]
    return None


def row_fault(row: dict) -> str | None:
    """What makes one row unusable as a preference pair, or None."""
    texts: dict[str, str] = {}
    for key in ANSWERS:
        value = row.get(key)
        if value is None:
            return f"{key} is missing"
        text = answer_text(value)
        if text is None:
            return f"{key} is neither text nor a list of turns (got {type(value).__name__})"
        if not text.strip():
            return f"{key} is empty"
        texts[key] = text.strip()
    if texts["chosen"] == texts["rejected"]:
        return "chosen and rejected are identical"
    return None


def preference_problems(rows: Iterable[dict], sampled: bool = False) -> list[Problem]:
    """DS-007 for the rows (numbered from 1) that are not usable pairs; every row is read."""
    faults: list[str] = []
    bad = total = 0
    for number, row in enumerate(rows, start=1):
        total = number
        fault = row_fault(row)
        if fault is not None:
            bad += 1
            if len(faults) < SHOWN_ROWS:
                faults.append(f"row {number}: {fault}")
    if not bad:
        return []
    more = f"; and {bad - len(faults)} more" if bad > len(faults) else ""
    scope = f"of the first {total} rows (a sample)" if sampled else f"of {total} rows"
    return [
        Problem(
            rules.PREFERENCE_PAIRS,
            f"{bad} {scope} are not usable preference pairs (each needs a non-empty chosen and "
            f"rejected that differ): {'; '.join(faults)}{more}",
            "content",
        )
    ]


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_chars(item) for item in value)
    return 0


def sequence_chars(row: dict) -> float:
    """Characters of one of the row's two sequences (prompt + an answer), the two averaged."""
    prompt = sum(_chars(value) for key, value in row.items() if key not in ANSWERS)
    return prompt + (_chars(row.get("chosen")) + _chars(row.get("rejected"))) / 2
