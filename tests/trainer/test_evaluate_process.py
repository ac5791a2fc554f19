"""``python -m trainer evaluate`` as the supervisor runs it: a real subprocess over the demo kit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.protocol import DataSource, EvalCombination, EvaluationSpec, ModelSource, read_events, write_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


def evaluation_spec(run_dir: Path, demo_kit, adapters: list[Path | None], rows: tuple[int, ...]) -> EvaluationSpec:
    run_dir.mkdir(parents=True, exist_ok=True)
    model = ModelSource(str(demo_kit.model_dir))
    prompt = demo_kit.prompt
    return EvaluationSpec(
        run_id=run_dir.name,
        run_dir=str(run_dir),
        combinations=tuple(EvalCombination(i, f"c{i}", model, str(a) if a else None) for i, a in enumerate(adapters, start=1)),
        data=DataSource(
            kind="project_jsonl",
            path=str(demo_kit.dataset_path),
            input_template=prompt["input_template"],
            completion_template=prompt["completion_template"],
            prompt_template=prompt["prompt_template"],
        ),
        row_indices=rows,
        rows_from="every 10th row",
        generation={"max_new_tokens": 8, "do_sample": False},
        batch_size=4,
        cpu_threads=1,
    )


def run(spec: EvaluationSpec) -> subprocess.CompletedProcess:
    path = write_spec(spec)
    return subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_base_and_two_adapters_are_answered_scored_and_reported_in_order(tmp_path, demo_kit, random_adapter):
    rows = tuple(range(0, 100, 10))
    spec = evaluation_spec(tmp_path / "run", demo_kit, [None, random_adapter(1), random_adapter(2)], rows)
    done = run(spec)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("JOB_DONE") == 1

    events = read_events(spec.events_path).events
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-2:] == ["artifact", "done"]
    assert kinds.index("eval") > max(i for i, k in enumerate(kinds) if k == "sample")
    assert events[0].data["total_steps"] == 30 and events[0].data["num_rows"] == 10
    assert events[-1].data["models_loaded"] == {str(demo_kit.model_dir): 1}, "the base model loads once for all three"

    answers = [r for e in events if e.type == "sample" for r in e.data["rows"]]
    assert sorted((a["position"], a["row_index"]) for a in answers) == sorted((p, r) for p in (1, 2, 3) for r in rows)
    by_position = {p: {a["row_index"]: a["output"] for a in answers if a["position"] == p} for p in (1, 2, 3)}
    assert by_position[2] != by_position[1] and by_position[3] != by_position[2]
    reports = {e.data["position"]: e.data for e in events if e.type == "eval"}
    for metric in (
        "exact_match",
        "token_f1",
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "accuracy",
        "macro_f1",
        "mean_log_likelihood",
        "perplexity",
        "batch_latency_s",
        "batch_tokens_per_s",
        "mean_new_tokens",
    ):
        assert all(metric in reports[p] for p in (1, 2, 3)), metric
    assert "delta_accuracy" not in reports[1]
    assert reports[2]["delta_perplexity"] == reports[2]["perplexity"] - reports[1]["perplexity"]

    output = Path(spec.run_dir) / "output"
    assert len((output / "results.jsonl").read_text().splitlines()) == 30
    aggregates = json.loads((output / "aggregates.json").read_text())
    assert [c["label"] for c in aggregates["combinations"]] == ["c1", "c2", "c3"]


def test_a_missing_adapter_fails_before_any_model_loads(tmp_path, demo_kit):
    spec = evaluation_spec(tmp_path / "run", demo_kit, [None, tmp_path / "gone"], (0, 1))
    done = run(spec)
    assert done.returncode == 1
    failed = read_events(spec.events_path).events
    assert [e.type for e in failed] == ["failed"] and "adapter not found" in failed[0].data["message"]
