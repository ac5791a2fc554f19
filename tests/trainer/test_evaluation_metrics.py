"""Per-row and aggregate scores, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from trainer.evaluation.metrics import RowResult, aggregate, label_set, score_row, token_f1


def row(output: str, reference: str, log_likelihood: float | None = -1.0, reference_tokens: int = 2) -> RowResult:
    return RowResult(output, reference, new_tokens=3, latency_s=0.5, log_likelihood=log_likelihood, reference_tokens=reference_tokens)


def test_row_scores():
    assert score_row("cancel_ticket", "cancel_ticket") == pytest.approx(
        {"exact_match": 1.0, "token_f1": 1.0, "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "bleu": 100.0}
    )
    # SQuAD normalisation drops "The" and the full stop: {cat, sat} against {cat, sat, down}
    assert token_f1("The cat sat.", "cat sat down") == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    wrong = score_row("refund", "payment issue")
    assert wrong == {"exact_match": 0.0, "token_f1": 0.0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "bleu": 0.0}
    assert 0 < score_row("the cat sat on the mat", "the cat sat on a mat")["bleu"] < 100


def test_label_sets_are_few_short_repeated_answers():
    assert label_set(["a_b", "c", "a_b", "c", "c"]) == ["a_b", "c"]
    assert label_set(["one", "two", "three"]) is None  # no repeats: free text
    assert label_set(["x" * 60, "x" * 60, "y", "y"]) is None  # too long for a label
    assert label_set(["same", "same", "same"]) is None  # one label classifies nothing


def test_aggregate_metrics():
    rows = [row("cat", "cat"), row("dog", "cat"), row("dog", "dog"), row("bird", "dog", log_likelihood=-3.0)]
    result = aggregate(rows, generation_seconds=2.0, labels=label_set([r.reference for r in rows]))
    assert result["exact_match"] == 0.5 and result["accuracy"] == 0.5
    # per label: cat P=1 R=.5 F1=2/3; dog P=.5 R=.5 F1=.5 (bird is outside the label set and simply wrong)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert result["mean_log_likelihood"] == pytest.approx(-6.0 / 8)
    assert result["perplexity"] == pytest.approx(math.exp(6.0 / 8))
    assert result["batch_tokens_per_s"] == pytest.approx(12 / 2.0) and result["batch_latency_s"] == 0.5
    assert result["mean_new_tokens"] == 3.0 and "latency_s" not in result and "tokens_per_s" not in result
    # Generated beside other combinations: the batch's throughput counts their tokens too.
    assert aggregate(rows, 2.0, None, batch_tokens=36)["batch_tokens_per_s"] == pytest.approx(36 / 2.0)
    assert set(result) >= {"rouge1", "rouge2", "rougeL", "bleu", "token_f1"}


def test_free_text_gets_no_classification_metrics():
    rows = [row("a long answer here", "a long answer"), row("another one", "something else")]
    result = aggregate(rows, 1.0, label_set([r.reference for r in rows]))
    assert "accuracy" not in result and "macro_f1" not in result and result["rougeL"] > 0
