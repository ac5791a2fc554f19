"""The LLM judge's parts that need no model: verdicts read from text, both orders combined, an endpoint's protocol."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from trainer.evaluation.judge import EndpointJudge, Judgement, Pair, judge_pairs, outcome, parse_verdict, prompts_for, rows_to_pairs
from trainer.protocol import JUDGE_KEY_ENV, JudgeSpec

RUBRIC = "Q: {input}\nRef: {reference}\nA: {answer_a}\nB: {answer_b}\nVerdict?"


def test_the_last_stated_verdict_counts_in_either_style():
    assert parse_verdict("A is wordy. B is right.\nVerdict: B") == "B"
    assert parse_verdict("**Verdict:** tie") == "tie"
    assert parse_verdict("Verdict: A ... on reflection, Verdict: B") == "B"
    assert parse_verdict("MT-Bench style: [[C]]") == "tie" and parse_verdict("[[A]]") == "A"
    assert parse_verdict("I cannot decide.") == ""


def test_both_orders_cancel_a_position_bias():
    # Order 1 shows #1 as A, order 2 shows the combination as A.
    assert outcome("B", "A") == "win" and outcome("A", "B") == "loss"
    assert outcome("A", "A") == "tie"  # a judge that always picks the first answer: no winner
    assert outcome("B", "tie") == "win" and outcome("tie", "B") == "loss"
    assert outcome("", "A") == "win" and outcome("", "") == ""


class FirstAnswerJudge:
    """Always prefers answer A, the strongest position bias there is; records what it was shown."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def judge(self, prompts):
        self.prompts += prompts
        return [Judgement("A", "A comes first") for _ in prompts]


class ReferenceJudge:
    """Prefers the answer equal to the reference, whichever position it has."""

    def judge(self, prompts):
        verdicts = []
        for prompt in prompts:
            fields = dict(line.split(": ", 1) for line in prompt.splitlines() if ": " in line)
            verdicts.append(Judgement("A" if fields["A"] == fields["Ref"] else "B" if fields["B"] == fields["Ref"] else "tie", "ref"))
        return verdicts


def pairs() -> list[Pair]:
    return [Pair(2, 0, "2+2", "4", "5", "4"), Pair(2, 1, "3+3", "6", "6", "7"), Pair(3, 0, "2+2", "4", "5", "5")]


def test_every_pair_is_judged_in_both_orders_and_rates_come_per_combination():
    judge, batches = FirstAnswerJudge(), []
    rates = judge_pairs(judge, RUBRIC, pairs(), batch_size=2, on_batch=batches.append)
    assert len(judge.prompts) == 6 and judge.prompts[0] == prompts_for(RUBRIC, pairs()[0])[0]
    assert "A: 5\nB: 4" in judge.prompts[0] and "A: 4\nB: 5" in judge.prompts[1]  # the same pair, swapped
    assert rates[2] == {"judged_rows": 2.0, "judge_win_rate": 0.0, "judge_tie_rate": 1.0, "judge_loss_rate": 0.0}
    rows = [row for batch in batches for row in batch]
    assert [(r["position"], r["row_index"], r["verdict_ab"], r["verdict_ba"], r["outcome"]) for r in rows] == [
        (2, 0, "A", "A", "tie"),
        (2, 1, "A", "A", "tie"),
        (3, 0, "A", "A", "tie"),
    ]

    rates = judge_pairs(ReferenceJudge(), RUBRIC, pairs(), batch_size=8, on_batch=lambda rows: None)
    assert rates[2]["judge_win_rate"] == 0.5 and rates[2]["judge_loss_rate"] == 0.5 and rates[3]["judge_tie_rate"] == 1.0


def test_pairs_are_rows_both_number_one_and_the_combination_answered():
    answers = {
        (1, 0): {"output": "a"},
        (2, 0): {"output": "b", "input": "q", "reference": "r"},
        (2, 5): {"output": "c"},
        (3, 0): {"output": "d"},
    }
    assert rows_to_pairs(answers, [1, 2, 3]) == [Pair(2, 0, "q", "r", "a", "b"), Pair(3, 0, "", "", "a", "d")]


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def test_an_endpoint_judge_speaks_openai_chat_completions_with_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv(JUDGE_KEY_ENV, "sk-test-123")
    sent = []

    def opener(request, timeout):
        sent.append(request)
        return FakeResponse(json.dumps({"choices": [{"message": {"content": "B is correct.\nVerdict: B"}}]}).encode())

    judge = EndpointJudge(JudgeSpec(rubric=RUBRIC, url="http://127.0.0.1:9/v1/", api_model="judge-7b", max_new_tokens=64), opener)
    assert judge.judge(["prompt"]) == [Judgement("B", "B is correct.\nVerdict: B")]
    request = sent[0]
    assert request.full_url == "http://127.0.0.1:9/v1/chat/completions" and request.get_header("Authorization") == "Bearer sk-test-123"
    body = json.loads(request.data)
    assert body["model"] == "judge-7b" and body["messages"] == [{"role": "user", "content": "prompt"}] and body["max_tokens"] == 64

    judge = EndpointJudge(
        JudgeSpec(rubric=RUBRIC, url="http://127.0.0.1:9/v1", api_model="m"),
        lambda request, timeout: FakeResponse(b'{"error": "no such model"}'),
    )
    with pytest.raises(RuntimeError, match="did not answer as an OpenAI chat completion"):
        judge.judge(["prompt"])
