"""The Evaluate tab: its HTML views as pure functions, its handlers on real services."""

from __future__ import annotations

from datetime import datetime, timezone

import gradio as gr
import pytest

from ftapp.adapters import AddAdapterRequest
from ftapp.evaluation_results import AnswerRow, CombinationResult, EvaluationResults
from ui import evaluate
from ui.evaluation_view import aggregate_html, rows_html

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)


def results(rows: list[AnswerRow], final: bool = True) -> EvaluationResults:
    from storage import RunRecord

    run = RunRecord(**{f: None for f in RunRecord.__dataclass_fields__} | {
        "id": "r1", "kind": "evaluation", "status": "succeeded", "spec": "{}", "gpus": "cpu", "created_at": NOW,
        "events_offset": 0, "malformed_events": 0, "devices_requested": "cpu"})
    combos = [CombinationResult(1, "base", "m", None, {"accuracy": 0.5, "perplexity": 9.0}, {}, final),
              CombinationResult(2, "<b>lora</b>", "m", "a", {"accuracy": 0.75, "perplexity": 12.0},
                                {"accuracy": 0.25, "perplexity": 3.0}, final)]
    return EvaluationResults(run, "held-out split", combos, rows, answers=2 * len(rows), expected=2 * len(rows))


ROWS = [
    AnswerRow(0, "Q: <script>x</script>", "yes", {1: "yes", 2: "yes"}, {1: {"exact_match": 1.0}, 2: {"exact_match": 1.0}}),
    AnswerRow(1, "Q: other", "no", {1: "yes", 2: "no"}, {1: {"exact_match": 0.0}, 2: {"exact_match": 1.0}}),
]


def test_aggregate_table_shows_deltas_coloured_by_direction_and_escapes_labels():
    html = aggregate_html(results(ROWS))
    assert "&lt;b&gt;lora&lt;/b&gt;" in html and "<b>lora</b>" not in html
    assert "0.75 <span style='color:#137333'>(+0.25)</span>" in html  # more accuracy: better
    assert "12 <span style='color:#c5221f'>(+3)</span>" in html  # more perplexity: worse
    assert "(so far)" in aggregate_html(results(ROWS, final=False))


def test_rows_escape_user_text_and_can_show_only_disagreements():
    html = rows_html(results(ROWS))
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert html.count("class='eval-row'") == 2
    only = rows_html(results(ROWS), only_disagreements=True)
    assert only.count("class='eval-row'") == 1 and "Q: other" in only


def test_start_reports_rule_ids_and_queues_a_valid_evaluation(services, registered, random_adapter):
    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(5))))
    with pytest.raises(gr.Error, match="EV-001"):
        evaluate.start_evaluation(services, registered.dataset_id, registered.prompt_id, registered.model_id, [], False,
                                  1.0, None, 16, 8, "cpu")
    message, pick = evaluate.start_evaluation(services, registered.dataset_id, registered.prompt_id, registered.model_id,
                                              [adapter.id], True, 0.5, 10, 16, 8, "cpu")
    run = services.evaluations.list()[0]
    assert run.id[:8] in message and pick.value == run.id and run.status == "queued"
    status, aggregate, rows, shown = evaluate.show_evaluation(services, run.id, False)
    assert "0/20 answers" in status and shown.startswith(f"{run.id}|queued")
    # Nothing new stored: the timer redraws nothing.
    assert evaluate.poll_evaluation(services, run.id, shown, False) == (gr.skip(),) * 5
