"""LLM-as-judge: a model compares each combination's answer with combination #1's, row by row, in both orders.

Judges favour one position (often the first), so every pair is judged twice: once with #1's answer as A and
the combination's as B, once swapped. Each order gives A, B or tie; a row's outcome for the combination is the
sum of both (its win +1, its loss -1, a tie 0): positive a win, negative a loss, zero a tie, so an order bias
that flips the verdict with the order cancels into a tie. A verdict the judge did not state is left out
(a local judge is asked for it by likelihood instead, see ``LocalJudge``).

The rubric is a template of plain fields (``trainer.protocol.JUDGE_FIELDS``); the judge is a local model
(loaded here, or the one already loaded for the answers when it is the same base) or an OpenAI-compatible
endpoint whose key arrives in the environment (``JUDGE_KEY_ENV``), never in the spec.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trainer.protocol import JUDGE_KEY_ENV, LOSS, TIE, VERDICT_A, VERDICT_B, VERDICT_TIE, WIN, JudgeSpec, render_template

# The last "Verdict: A|B|tie" in the judge's text (markdown bold allowed), or MT-Bench's [[A]] / [[B]] / [[C]] (C: a tie).
_VERDICT = re.compile(r"verdict\s*[:=\-]?\s*\**\s*\[{0,2}\s*(A|B|tie)\b|\[\[(A|B|C)\]\]", re.IGNORECASE)
HTTP_TIMEOUT_S = 120
LIKELIHOOD_NOTE = " [no verdict stated; the likeliest of 'A', 'B', 'tie' after 'Verdict:']"


@dataclass(frozen=True)
class Pair:
    """One row judged for one combination: #1's answer and the combination's."""

    position: int
    row_index: int
    input: str
    reference: str
    baseline: str
    answer: str


@dataclass(frozen=True)
class Judgement:
    verdict: str  # VERDICT_A, VERDICT_B, VERDICT_TIE, or "" when the judge gave none
    reason: str


class Judge(Protocol):
    def judge(self, prompts: Sequence[str]) -> list[Judgement]: ...


def parse_verdict(text: str) -> str:
    matches = list(_VERDICT.finditer(text))
    if not matches:
        return ""
    word = (matches[-1].group(1) or matches[-1].group(2)).upper()
    return {"A": VERDICT_A, "B": VERDICT_B, "C": VERDICT_TIE, "TIE": VERDICT_TIE}[word]


def prompts_for(rubric: str, pair: Pair) -> tuple[str, str]:
    """(#1's answer as A, the combination's as A): the two orders of one pair."""
    fields = {"input": pair.input, "reference": pair.reference}
    return (
        render_template(rubric, {**fields, "answer_a": pair.baseline, "answer_b": pair.answer}),
        render_template(rubric, {**fields, "answer_a": pair.answer, "answer_b": pair.baseline}),
    )


def outcome(baseline_first: str, combination_first: str) -> str:
    """The combination's result against #1 from both orders' verdicts; "" when neither order gave one."""
    points = (
        {VERDICT_B: 1, VERDICT_A: -1, VERDICT_TIE: 0}.get(baseline_first),
        {VERDICT_A: 1, VERDICT_B: -1, VERDICT_TIE: 0}.get(combination_first),
    )
    known = [p for p in points if p is not None]
    if not known:
        return ""
    total = sum(known)
    return WIN if total > 0 else LOSS if total < 0 else TIE


def judge_pairs(
    judge: Judge, rubric: str, pairs: list[Pair], batch_size: int, on_batch: Callable[[list[dict[str, Any]]], None]
) -> dict[int, dict[str, float]]:
    """Judge every pair in both orders; ``on_batch`` gets each batch's verdict rows (for ``sample`` events).

    Returns the judge's rates per position: judge_win_rate, judge_tie_rate, judge_loss_rate over the rows with an
    outcome, and judged_rows."""
    counts: dict[int, dict[str, int]] = {}
    for start in range(0, len(pairs), max(1, batch_size)):
        batch = pairs[start : start + max(1, batch_size)]
        prompts = [prompt for pair in batch for prompt in prompts_for(rubric, pair)]
        judgements = judge.judge(prompts)
        rows = []
        for k, pair in enumerate(batch):
            first, second = judgements[2 * k], judgements[2 * k + 1]
            result = outcome(first.verdict, second.verdict)
            tally = counts.setdefault(pair.position, {WIN: 0, TIE: 0, LOSS: 0})
            if result:
                tally[result] += 1
            rows.append(
                {
                    "position": pair.position,
                    "row_index": pair.row_index,
                    "outcome": result,
                    "verdict_ab": first.verdict,
                    "reason_ab": first.reason,
                    "verdict_ba": second.verdict,
                    "reason_ba": second.reason,
                }
            )
        on_batch(rows)
    rates: dict[int, dict[str, float]] = {}
    for position, tally in counts.items():
        judged = sum(tally.values())
        rates[position] = {"judged_rows": float(judged)}
        if judged:
            rates[position].update(
                {"judge_win_rate": tally[WIN] / judged, "judge_tie_rate": tally[TIE] / judged, "judge_loss_rate": tally[LOSS] / judged}
            )
    return rates


class EndpointJudge:
    """An OpenAI-compatible chat completions endpoint (``<url>/chat/completions``), greedy."""

    def __init__(self, spec: JudgeSpec, opener: Callable[..., Any] = urllib.request.urlopen):
        assert spec.url, "an endpoint judge needs a URL"
        self.spec, self.opener = spec, opener
        self.key = os.environ.get(JUDGE_KEY_ENV)

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        return [self._ask(prompt) for prompt in prompts]

    def _ask(self, prompt: str) -> Judgement:
        body = {
            "model": self.spec.api_model or "",
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": self.spec.max_new_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(
            self.spec.url.rstrip("/") + "/chat/completions",  # type: ignore[union-attr]
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with self.opener(request, timeout=HTTP_TIMEOUT_S) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"the judge endpoint {self.spec.url} answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as error:
            raise RuntimeError(f"the judge endpoint {self.spec.url} cannot be reached: {error}") from None
        try:
            text = str(answer["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(
                f"the judge endpoint {self.spec.url} did not answer as an OpenAI chat completion: {json.dumps(answer)[:300]}"
            ) from None
        return Judgement(parse_verdict(text), text.strip())


def rows_to_pairs(answers: dict[tuple[int, int], dict[str, Any]], positions: Sequence[int]) -> list[Pair]:
    """Every row both #1 and a combination answered, combination by combination."""
    pairs = []
    for position in positions:
        if position == 1:
            continue
        for (where, row_index), row in sorted(answers.items()):
            baseline = answers.get((1, row_index))
            if where == position and baseline is not None:
                pairs.append(
                    Pair(
                        position,
                        row_index,
                        str(row.get("input") or ""),
                        str(row.get("reference") or ""),
                        str(baseline.get("output") or ""),
                        str(row.get("output") or ""),
                    )
                )
    return pairs
