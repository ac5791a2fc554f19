"""The Evaluate tab: its HTML views as pure functions, its handlers on real services."""

from __future__ import annotations

from datetime import UTC, datetime

import gradio as gr
import pytest

from ftapp.evaluation.results import AnswerRow, CombinationResult, EvaluationResults, metric_help
from ftapp.models.adapters import AddAdapterRequest
from trainer.protocol import REJECTED_DIVIDER
from ui import evaluate
from ui.evaluation_view import aggregate_html, rows_html

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def results(rows: list[AnswerRow], final: bool = True) -> EvaluationResults:
    from storage import RunRecord

    run = RunRecord(
        **{f: None for f in RunRecord.__dataclass_fields__}
        | {
            "id": "r1",
            "kind": "evaluation",
            "status": "succeeded",
            "spec": "{}",
            "gpus": "cpu",
            "created_at": NOW,
            "events_offset": 0,
            "malformed_events": 0,
            "devices_requested": "cpu",
        }
    )
    combos = [
        CombinationResult(1, "base", "m", None, {"accuracy": 0.5, "perplexity": 9.0}, {}, final),
        CombinationResult(2, "<b>lora</b>", "m", "a", {"accuracy": 0.75, "perplexity": 12.0}, {"accuracy": 0.25, "perplexity": 3.0}, final),
    ]
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
        evaluate.start_evaluation(
            services,
            evaluate.evaluation_request(
                registered.dataset_id, registered.prompt_id, registered.model_id, [], False, 1.0, None, 16, 8, "cpu"
            ),
        )
    message, pick = evaluate.start_evaluation(
        services,
        evaluate.evaluation_request(
            registered.dataset_id, registered.prompt_id, registered.model_id, [adapter.id], True, 0.5, 10, 16, 8, "cpu"
        ),
    )
    run = services.evaluations.list()[0]
    assert run.id[:8] in message and pick.value == run.id and run.status == "queued"
    view = evaluate.show_evaluation(services, run.id, False)
    assert "0/20 answers" in view.status and (view.drawn.run_id, view.drawn.status) == (run.id, "queued")
    # Nothing new stored: the timer redraws nothing; the other view of the rows is drawn anew.
    assert evaluate.poll_evaluation(services, run.id, view.drawn, False) == (gr.skip(),) * 5
    assert evaluate.poll_evaluation(services, run.id, view.drawn, True)[0] != gr.skip()


def preference_results(rows: list[AnswerRow]) -> EvaluationResults:
    base = results(rows)
    combos = [
        CombinationResult(1, "base", "m", None, {"preference_accuracy": 0.5, "mean_margin": -0.2}, {}, True),
        CombinationResult(
            2,
            "dpo",
            "m",
            "a",
            {"preference_accuracy": 1.0, "mean_margin": 1.5, "reward_accuracy": 1.0, "reward_margin": 0.17, "reward_beta": 0.1},
            {"preference_accuracy": 0.5, "mean_margin": 1.7},
            True,
        ),
    ]
    return EvaluationResults(base.run, "held-out split", combos, rows, base.answers, base.expected)


PAIRS = [
    AnswerRow(
        0,
        "Hi?",
        "Hello!" + REJECTED_DIVIDER + "Go away.",
        {1: "prefers chosen · margin +0.400", 2: "prefers chosen · margin +2.000"},
        {1: {"preference_accuracy": 1.0}, 2: {"preference_accuracy": 1.0}},
    ),
    AnswerRow(
        1,
        "Help?",
        "Sure." + REJECTED_DIVIDER + "<b>No</b>",
        {1: "prefers rejected · margin -0.800", 2: "prefers chosen · margin +1.000"},
        {1: {"preference_accuracy": 0.0}, 2: {"preference_accuracy": 1.0}},
    ),
]


def test_preference_rows_show_the_pair_and_each_verdict():
    assert PAIRS[1].pair == ("Sure.", "<b>No</b>") and ROWS[0].pair is None
    html = rows_html(preference_results(PAIRS))
    assert "chosen / rejected" in html and "&lt;b&gt;No&lt;/b&gt;" in html and "<b>rejected</b>" in html
    # Green where the combination finds the chosen answer likelier; outlined only where its verdict differs from #1's.
    assert "background:#fde8e8;white-space:pre-wrap;overflow-wrap:anywhere'>prefers rejected" in html
    assert html.count("outline:2px") == 1
    only = rows_html(preference_results(PAIRS), only_disagreements=True)
    assert only.count("class='eval-row'") == 1 and "Help?" in only


def test_preference_and_reward_metrics_explain_themselves():
    html = aggregate_html(preference_results(PAIRS))
    assert html.index(">preference_accuracy<") < html.index(">mean_margin<"), "the method's metrics lead"
    assert "title='DPO&#x27;s reward accuracy on held-out pairs" in html and "reference policy" in html
    assert metric_help("reward/valid_json/std") == "Standard deviation of the valid_json reward over the answers."


def test_ticked_rewards_go_into_the_request_and_none_ticked_leaves_the_default():
    table = [[True, "exact_match", 1.0, "", "…"], [False, "valid_json", 1.0, "", "…"], [True, "regex_match", 0.5, "^[a-z]+$", "…"]]
    form = ("d", "p", "m", ["a"], True, 1.0, None, 16, 8, "cpu")
    assert evaluate.evaluation_request(*form, table).rewards == (
        {"kind": "exact_match", "weight": 1.0},
        {"kind": "regex_match", "weight": 0.5, "pattern": "^[a-z]+$"},
    )
    assert evaluate.evaluation_request(*form, [[False, *row[1:]] for row in table]).rewards is None


def test_zero_max_rows_means_all_as_the_label_says_and_below_zero_is_refused(services, registered):
    form = (registered.dataset_id, registered.prompt_id, registered.model_id, [], True, 1.0)
    assert evaluate.evaluation_request(*form, 0, 16, 8, "cpu").max_rows is None
    assert evaluate.evaluation_request(*form, None, 16, 8, "cpu").max_rows is None  # a cleared field
    with pytest.raises(gr.Error, match="EV-010"):
        evaluate.start_evaluation(services, evaluate.evaluation_request(*form, -1, 16, 8, "cpu"))
    assert services.evaluations.list() == []


def test_the_row_limits_start_at_the_value_their_labels_explain(services):
    """gradio's number field shows an empty value as 0: a label promising "empty: all" over a 0 was untrue."""
    with gr.Blocks() as page:
        evaluate.render(services)
    for elem_id in ("eval-max-rows", "eval-benchmark-limit"):
        field = next(c for c in page.blocks.values() if getattr(c, "elem_id", None) == elem_id)
        assert field.value == 0 and "(0: all)" in field.label


def test_a_judge_key_is_stored_under_its_name_and_never_echoed(services):
    key = "sk-judge-" + "Zy3" * 10
    note, box = evaluate.store_api_key(services, " judge-key ", key)
    assert box == "" and key not in note and "judge-key" in note
    assert services.api_keys.value("judge-key") == key
    with pytest.raises(gr.Error, match="SK-001") as caught:
        evaluate.store_api_key(services, "judge-key", "two words " + key)
    assert key not in caught.value.message and services.api_keys.value("judge-key") == key


def test_a_demo_visitor_cannot_store_or_overwrite_the_hosts_judge_key(services):
    from ftapp.demo.policy import DemoCaps
    from ftapp.visitors import demo_services, services_for_key

    services.api_keys.store("judge-key", "sk-host")
    visitor = services_for_key(demo_services(services, DemoCaps()), "visitor-key")
    with pytest.raises(gr.Error, match="DM-007"):
        evaluate.store_api_key(visitor, "judge-key", "sk-visitor")
    assert services.api_keys.value("judge-key") == "sk-host"
