"""Benchmark suites (lm-evaluation-harness) and an LLM judge through the real services, supervisor and trainer.

The tasks are small local ones in lm-eval's own YAML format with local jsonl data: a multiple-choice task (scored by
log-likelihood) and a generation task (scored on generated text). The tiny demo model answers them with two random
adapters, and judges its own answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ftapp.errors import ValidationError
from ftapp.evaluation import Combination, EvaluationRequest, JudgeRequest
from ftapp.evaluation.results import win_rates
from ftapp.models.adapters import AddAdapterRequest
from storage import ComparisonVoteRecord, EvaluationCombinationRecord, EvaluationVerdictRecord
from trainer.protocol import read_events

MC_TASK = """task: tiny_sums_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: sums_mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GENERATION_TASK = """task: tiny_sums_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: sums_gen.jsonl
test_split: test
output_type: generate_until
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """Two lm-eval tasks whose data files are relative to the folder (the trainer loads them from inside it)."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    sums = [(1, 2), (3, 4), (2, 2), (5, 1), (0, 3), (4, 4)]
    (folder / "sums_mc.jsonl").write_text(
        "".join(
            json.dumps({"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "answer": 0}) + "\n"
            for a, b in sums
        )
    )
    (folder / "sums_gen.jsonl").write_text(
        "".join(json.dumps({"question": f"What is {a} plus {b}?", "answer": str(a + b)}) + "\n" for a, b in sums[:4])
    )
    (folder / "tiny_sums_mc.yaml").write_text(MC_TASK)
    (folder / "tiny_sums_gen.yaml").write_text(GENERATION_TASK)
    return folder


@pytest.fixture
def two_adapters(services, registered, random_adapter):
    return [
        services.adapters.add(
            AddAdapterRequest(name=f"random-{seed}", model_id=registered.model_id, location=str(random_adapter(seed, scale=0.3)))
        )
        for seed in (21, 22)
    ]


def combos(registered, adapters) -> tuple[Combination, ...]:
    return (Combination(registered.model_id), *(Combination(registered.model_id, a.id) for a in adapters))


@pytest.mark.slow
def test_local_benchmark_tasks_score_base_and_two_adapters_on_one_loaded_base(services, registered, two_adapters, task_dir):
    run = services.evaluations.submit(
        EvaluationRequest(
            dataset_id="",
            prompt_id="",
            combinations=combos(registered, two_adapters),
            gpus="cpu",
            benchmark_dir=str(task_dir),
            batch_size=4,
        )
    )
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text

    results = services.evaluations.results(run.id)
    names = ("bench/tiny_sums_mc/acc", "bench/tiny_sums_gen/exact_match")
    assert all(c.final and set(names) <= set(c.metrics) for c in results.combinations)
    assert all(0.0 <= c.metrics[name] <= 1.0 for c in results.combinations for name in names)
    base, first, second = results.combinations
    assert base.deltas == {}
    for combo in (first, second):
        assert combo.deltas["bench/tiny_sums_mc/acc"] == pytest.approx(
            combo.metrics["bench/tiny_sums_mc/acc"] - base.metrics["bench/tiny_sums_mc/acc"]
        )
    with services.db.transaction() as tx:  # stored like the other metrics: one score row per combination and metric
        stored = {(s.position, s.metric) for s in tx.evaluation_scores.find(run_id=run.id)}
    assert {(p, n) for p in (1, 2, 3) for n in names} <= stored

    events = read_events(Path(final.run_dir) / "events.jsonl").events
    assert events[0].data["benchmarks"] == ["tiny_sums_gen", "tiny_sums_mc"]
    assert events[-1].data["models_loaded"] == {registered.model.location: 1}, "one base load answers all three"
    steps = [e.data for e in events if e.type == "progress" and e.data.get("phase") == "benchmark"]
    # 6 questions x 3 choices + 4 generations, each answered for the 3 combinations in shared batches
    assert steps and steps[-1]["step"] == steps[-1]["total_steps"] == (6 * 3 + 4) * 3
    saved = json.loads((Path(final.run_dir) / "output" / "benchmarks.json").read_text())
    assert set(saved["combinations"]) == {"1", "2", "3"}

    import mlflow

    logged = mlflow.MlflowClient(tracking_uri=services.settings.mlflow_tracking_uri).get_run(final.mlflow_run_id).data.metrics
    assert logged["c2.bench/tiny_sums_mc/acc"] == pytest.approx(first.metrics["bench/tiny_sums_mc/acc"])
    assert "c3.delta_bench/tiny_sums_gen/exact_match" in logged


@pytest.mark.slow
def test_the_tiny_model_judges_each_adapter_against_the_base_in_both_orders(services, registered, two_adapters):
    judge = JudgeRequest(model_id=registered.model_id, max_new_tokens=8)
    run = services.evaluations.submit(
        EvaluationRequest(
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
            combinations=combos(registered, two_adapters),
            gpus="cpu",
            generation={"max_new_tokens": 6},
            max_rows=3,
            batch_size=4,
            judge=judge,
        )
    )
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text

    with services.db.transaction() as tx:
        verdicts = tx.evaluation_verdicts.find(run_id=run.id)
    assert sorted(v.position for v in verdicts) == [2, 2, 2, 3, 3, 3]
    for verdict in verdicts:  # both orders judged, each with the judge's own words
        assert verdict.verdict_ab in ("A", "B", "tie") and verdict.verdict_ba in ("A", "B", "tie")
        assert verdict.reason_ab and verdict.reason_ba and verdict.outcome in ("win", "tie", "loss")
    results = services.evaluations.results(run.id)
    base, first, second = results.combinations
    assert "win_rate" not in base.metrics
    for combo in (first, second):
        assert combo.metrics["judged_rows"] == 3.0
        assert combo.metrics["judge_win_rate"] + combo.metrics["judge_tie_rate"] + combo.metrics["judge_loss_rate"] == pytest.approx(1.0)
        assert combo.metrics["win_rate"] == combo.metrics["judge_win_rate"] and combo.metrics["ab_votes"] == 0.0
    assert all(set(row.verdicts) == {2, 3} for row in results.rows)  # beside the answers, in the side-by-side rows
    events = read_events(Path(final.run_dir) / "events.jsonl").events
    assert events[-1].data["models_loaded"] == {registered.model.location: 1}, "the judge is the loaded base: no second load"


@pytest.mark.slow
def test_an_uncached_hub_task_offline_fails_at_once_saying_the_network_is_needed(services, registered, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))  # nothing cached, whatever this machine has
    run = services.evaluations.submit(
        EvaluationRequest(
            dataset_id="", prompt_id="", combinations=(Combination(registered.model_id),), gpus="cpu", benchmarks=("arc_easy",)
        )
    )
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "failed"
    assert "benchmark task 'arc_easy' needs the network" in final.error_text and "HF_HUB_OFFLINE=1" in final.error_text
    events = read_events(Path(final.run_dir) / "events.jsonl").events
    assert [e.type for e in events] == ["failed"], "refused before the run started: no model loaded"


def test_bad_benchmark_and_judge_requests_write_nothing(services, registered, tmp_path, capsys):
    runs_before = services.runs.list()
    with pytest.raises(ValidationError) as caught:
        services.evaluations.submit(
            EvaluationRequest(
                dataset_id="",
                prompt_id="",
                combinations=(Combination(registered.model_id),),
                gpus="cpu",
                benchmarks=("gsm8k", "../etc"),
                benchmark_dir=str(tmp_path),
                benchmark_limit=0,
                judge=JudgeRequest(url="file:///etc/passwd", rubric="{answer_a} vs {answer_b} {secret}"),
            )
        )
    assert caught.value.rule_ids.count("EV-014") == 3 and "EV-015" in caught.value.rule_ids
    text = str(caught.value)
    assert "'../etc' is not an lm-eval task name" in text and "holds no task YAML file" in text
    assert "give a dataset whose rows are answered" in text and "unknown field(s) {secret}" in text
    assert services.runs.list() == runs_before
    # The CLI's evaluate takes the same request: no dataset and no benchmark is EV-002, with nothing started.
    code = cli_main(["--home", str(services.settings.home), "evaluate", "--combo", registered.model_id, "--gpus", "cpu"])
    assert code != 0 and "EV-002" in capsys.readouterr().err
    assert services.runs.list() == runs_before


def test_blind_compare_votes_count_into_the_win_rates():
    combos = [EvaluationCombinationRecord(1, "r", 1, "base", "m", None), EvaluationCombinationRecord(2, "r", 2, "tuned", "m", "a1")]
    verdicts = [
        EvaluationVerdictRecord(1, "r", 2, 0, "win", "B", "", "A", ""),
        EvaluationVerdictRecord(2, "r", 2, 1, "tie", "A", "", "A", ""),
    ]

    def vote(winner: str, blind: bool = True, adapters=(None, "a1")) -> ComparisonVoteRecord:
        candidates = [{"label": label, "adapter_id": a, "output": "..."} for label, a in zip("AB", adapters)]
        return ComparisonVoteRecord("v", "m", "prompt", "{}", json.dumps(candidates), blind, winner, datetime.now(UTC))

    votes = [vote("B"), vote("B"), vote("tie"), vote("A", blind=False), vote("B", adapters=(None, "a9"))]
    rates = win_rates(combos, verdicts, votes)
    # judge: 1 win, 1 tie; blind votes between these two: 2 wins (B is the adapter), 1 tie; the rest compared others
    assert rates[2] == {"win_rate": 3 / 5, "tie_rate": 2 / 5, "loss_rate": 0.0, "ab_votes": 3.0}
    assert 1 not in rates


def test_a_judge_endpoints_key_is_named_and_kept_in_the_secrets_store(services, registered, monkeypatch):
    from ftapp.secrets import ApiKeys

    keys = ApiKeys(services.settings.secrets_dir)
    keys.store("judge-key", "sk-secret")
    assert (
        keys.value("judge-key") == "sk-secret"
        and oct((services.settings.secrets_dir / "api_keys" / "judge-key").stat().st_mode)[-3:] == "600"
    )
    monkeypatch.setenv("MY_JUDGE_API_KEY", "sk-env")
    assert keys.value("MY_JUDGE_API_KEY") == "sk-env"
    ok = JudgeRequest(url="http://127.0.0.1:8000/v1", api_model="judge", api_key_name="judge-key")
    missing = JudgeRequest(url="http://127.0.0.1:8000/v1", api_model="judge", api_key_name="nobody-stored-this")
    base = dict(
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        gpus="cpu",
        combinations=(Combination(registered.model_id), Combination(registered.model_id)),
    )
    assert services.evaluations.check(EvaluationRequest(**base, judge=ok))[0] == []
    problems = services.evaluations.check(EvaluationRequest(**base, judge=missing))[0]
    assert [p.rule_id for p in problems] == ["EV-015"] and "no API key named 'nobody-stored-this'" in problems[0].message
