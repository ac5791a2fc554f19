"""The verifiable rewards of GRPO runs: each ``RewardSpec`` kind scored exactly as ``REWARD_KINDS`` says.

Standard library and ``regex`` (its searches take a timeout) only, so ftapp's tests and the evaluation of GRPO
adapters can score completions without torch. ``score_completions`` scores a batch with every reward and their weighted sum;
``reward_functions`` gives the same scores as TRL ``reward_funcs``: one callable per reward whose
``__name__`` is the reward's name, so TRL logs ``rewards/<name>/mean`` under the name the UI charts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import regex

from trainer.protocol.rewards import CUSTOM_REWARD, REWARD_KINDS, RewardSpec, reward_names

TOTAL = "reward"  # the weighted sum, under TRL's name for it
# A decimal number, with optional sign, thousands commas and fraction ("-1,234.5", "3", ".5").
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
# A regex_match pattern is the requester's: one that backtracks for ever ("(a|aa)+$") would hold the run, and its GPU or
# demo slot, for good. A search that takes longer than this does not match.
REGEX_TIMEOUT_S = 0.1
CUSTOM_FUNCTION = "reward"  # what a custom_python file must define: reward(completion, reference, row) -> float

Scorer = Callable[[str, "str | None", "dict[str, Any]"], float]


def score_completions(
    rewards: Sequence[RewardSpec], completions: Sequence[str], references: Sequence[str | None], rows: Sequence[dict] | None = None
) -> dict[str, list[float]]:
    """Per reward name (``reward_names``) the score of every completion, plus "reward": the weighted sum."""
    if len(references) != len(completions) or (rows is not None and len(rows) != len(completions)):
        raise ValueError(
            f"{len(completions)} completions need as many references and rows, "
            f"got {len(references)} references and {len(rows) if rows is not None else 'no'} rows"
        )
    row_dicts: Sequence[dict] = rows if rows is not None else [{}] * len(completions)
    scores: dict[str, list[float]] = {}
    total = [0.0] * len(completions)
    for name, reward in zip(reward_names(rewards), rewards):
        scorer = scorer_for(reward)
        scores[name] = [scorer(c, r, row) for c, r, row in zip(completions, references, row_dicts)]
        total = [t + reward.weight * s for t, s in zip(total, scores[name])]
    scores[TOTAL] = total
    return scores


def reward_functions(rewards: Sequence[RewardSpec]) -> list[RewardFunction]:
    """TRL ``reward_funcs`` for ``rewards``, in order; their weights go to ``GRPOConfig.reward_weights``."""
    return [RewardFunction(name, scorer_for(reward)) for name, reward in zip(reward_names(rewards), rewards)]


class RewardFunction:
    """A TRL reward function: TRL calls it with the batch's prompts, completions and dataset columns.

    The GRPO dataset carries ``reference`` (the expected answer, or None) and ``row`` (the source row
    as JSON, for custom rewards). Conversational completions arrive as a list of turns; the reward
    scores the text of the last one.
    """

    def __init__(self, name: str, scorer: Scorer):
        self.__name__ = name  # trl.trainer.utils.get_callable_name reads this
        self.scorer = scorer

    def __call__(
        self, prompts: list[Any], completions: list[Any], reference: list[str | None] | None = None, row: list[str] | None = None, **_: Any
    ) -> list[float]:
        references = reference if reference is not None else [None] * len(completions)
        rows = [json.loads(r) if r else {} for r in row] if row is not None else [{}] * len(completions)
        return [self.scorer(completion_text(c), r, source) for c, r, source in zip(completions, references, rows)]


def completion_text(completion: Any) -> str:
    if isinstance(completion, list):  # [{"role": "assistant", "content": ...}]
        return str(completion[-1].get("content") or "") if completion else ""
    return str(completion)


def scorer_for(reward: RewardSpec) -> Scorer:
    """The scoring function of one reward; its settings are checked here, before any completion exists."""
    kind = reward.kind
    if kind == "exact_match":
        return _exact_match
    if kind == "numeric_match":
        tolerance = float(reward.tolerance)
        return lambda completion, reference, row: _numeric_match(completion, reference, tolerance)
    if kind == "regex_match":
        if not reward.pattern:
            raise ValueError("a regex_match reward needs a pattern")
        try:
            pattern = regex.compile(reward.pattern)
        except regex.error as exc:
            raise ValueError(f"regex_match pattern {reward.pattern!r} is not a valid Python regex: {exc}") from exc
        return lambda completion, reference, row: _regex_match(pattern, completion)
    if kind == "valid_json":
        return _valid_json
    if kind == "length_penalty":
        if not reward.target_length or reward.target_length < 1:
            raise ValueError(f"a length_penalty reward needs a target_length of at least 1, got {reward.target_length!r}")
        target = int(reward.target_length)
        return lambda completion, reference, row: min(0.0, (target - len(completion)) / target)
    if kind == CUSTOM_REWARD:
        return _custom_scorer(reward.code_path)
    raise ValueError(f"unknown reward kind {kind!r}; expected one of {', '.join(REWARD_KINDS)}")


def _regex_match(pattern: regex.Pattern, completion: str) -> float:
    try:
        return 1.0 if pattern.search(completion, timeout=REGEX_TIMEOUT_S) else 0.0
    except TimeoutError:
        return 0.0


def last_number(text: str | None) -> float | None:
    found = NUMBER.findall(text or "")
    return float(found[-1].replace(",", "")) if found else None


def _exact_match(completion: str, reference: str | None, row: dict[str, Any]) -> float:
    if reference is None:
        return 0.0
    return 1.0 if completion.strip().casefold() == str(reference).strip().casefold() else 0.0


def _numeric_match(completion: str, reference: str | None, tolerance: float) -> float:
    expected, answered = last_number(reference), last_number(completion)
    if expected is None or answered is None:
        return 0.0
    return 1.0 if abs(answered - expected) <= tolerance else 0.0


def _valid_json(completion: str, reference: str | None, row: dict[str, Any]) -> float:
    try:
        json.loads(completion)
    except ValueError:
        return 0.0
    return 1.0


def _custom_scorer(code_path: str | None) -> Scorer:
    """``reward`` from the file at ``code_path``; its scores must be finite numbers."""
    if not code_path or not Path(code_path).is_file():
        raise FileNotFoundError(f"custom_python reward file not found: {code_path}")
    module_spec = importlib.util.spec_from_file_location(f"ftapp_custom_reward_{Path(code_path).stem}", code_path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot load {code_path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, CUSTOM_FUNCTION, None)
    if not callable(function):
        raise ValueError(f"{code_path} must define a function {CUSTOM_FUNCTION}(completion, reference, row) -> float")

    def score(completion: str, reference: str | None, row: dict[str, Any]) -> float:
        value = function(completion, reference, row)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{code_path}: {CUSTOM_FUNCTION}() returned {value!r}; it must return a finite number")
        return float(value)

    return score
