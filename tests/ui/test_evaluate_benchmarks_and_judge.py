"""The Evaluate tab's benchmark and judge fields, the judge's verdicts in the rows, and the columns' help texts."""

from __future__ import annotations

from datetime import UTC, datetime

from ftapp.evaluation import DEFAULT_RUBRIC, is_lower_better, metric_help
from ftapp.evaluation.results import AnswerRow, CombinationResult, EvaluationResults
from storage import EvaluationVerdictRecord, RunRecord
from ui import evaluate
from ui.evaluation_view import aggregate_html, rows_html


def test_the_form_names_benchmarks_and_a_judge():
    request = evaluate.evaluation_request(
        "",
        "",
        "m",
        ["a"],
        True,
        1.0,
        None,
        16,
        8,
        "cpu",
        None,
        benchmarks="mmlu, gsm8k\narc_easy",
        benchmark_dir=" /data/tasks ",
        benchmark_limit=20,
        judge_model_id="j",
        judge_rubric=DEFAULT_RUBRIC,
    )
    assert request.benchmarks == ("mmlu", "gsm8k", "arc_easy") and request.benchmark_dir == "/data/tasks"
    assert request.benchmark_limit == 20 and request.judge.model_id == "j" and request.judge.rubric_text == DEFAULT_RUBRIC
    plain = evaluate.evaluation_request("d", "p", "m", [], True, 1.0, None, 16, 8, "cpu", None, judge_model_id="")
    assert plain.judge is None and plain.benchmarks == () and plain.benchmark_dir is None


def test_help_says_how_accuracy_and_exact_match_differ_and_whose_cost_the_batch_numbers_are():
    assert "first line" in metric_help("accuracy") and "can be lower" in metric_help("accuracy")
    assert "as written" in metric_help("exact_match") and "can be higher" in metric_help("exact_match")
    for name in ("batch_latency_s", "batch_tokens_per_s", "latency_s"):
        assert "equal for" in metric_help(name) or "equal for every" in metric_help(name), name
    assert "lm-evaluation-harness task gsm8k: exact_match, after its 'strict-match' answer filter" in metric_help(
        "bench/gsm8k/exact_match/strict-match"
    )
    assert is_lower_better("bench/wikitext/word_perplexity") and not is_lower_better("bench/mmlu/acc")
    assert "blind A/B" in metric_help("win_rate")


def test_verdicts_show_under_the_answers_with_the_reasons_on_hover():
    run = RunRecord(
        **{f: None for f in RunRecord.__dataclass_fields__}
        | {
            "id": "r1",
            "kind": "evaluation",
            "status": "succeeded",
            "spec": "{}",
            "gpus": "cpu",
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "events_offset": 0,
            "malformed_events": 0,
            "devices_requested": "cpu",
        }
    )
    verdict = EvaluationVerdictRecord(1, "r1", 2, 0, "win", "B", "B names the <label>", "A", "A is right")
    row = AnswerRow(0, "q", "yes", {1: "no", 2: "yes"}, {1: {"exact_match": 0.0}, 2: {"exact_match": 1.0}}, {2: verdict})
    combos = [
        CombinationResult(1, "base", "m", None, {"exact_match": 0.0}, {}, True),
        CombinationResult(2, "tuned", "m", "a", {"exact_match": 1.0, "win_rate": 1.0, "bench/mmlu/acc": 0.3}, {"exact_match": 1.0}, True),
    ]
    results = EvaluationResults(run, "rows", combos, [row], answers=2, expected=2)
    html = rows_html(results)
    assert "judge: <b>win</b> vs #1 (B / A)" in html and "B names the &lt;label&gt;" in html and "<label>" not in html
    table = aggregate_html(results)
    assert "win_rate" in table and "bench/mmlu/acc" in table and "lm-evaluation-harness task mmlu" in table
