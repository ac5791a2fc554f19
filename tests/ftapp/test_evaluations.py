"""Evaluation runs through the real services, supervisor and a `python -m trainer evaluate` child on CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ftapp.errors import ValidationError
from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from trainer.protocol import read_events

FAST = {
    "max_steps": 20,
    "logging_steps": 5,
    "eval_steps": 20,
    "save_steps": 20,
    "per_device_train_batch_size": 8,
    "max_length": 64,
    "learning_rate": 5e-3,
}
METRICS = (
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
)


@pytest.fixture
def adapters(services, registered, random_adapter):
    """A trained adapter (its run holds out 10% of the rows) and an untrained random one."""
    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model_id,
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
            adapter_name="trained",
            gpus="cpu",
            overrides=FAST,
        )
    )
    assert services.runs.wait(run.id, timeout_s=300).status == "succeeded"
    trained = next(a for a in services.adapters.list() if a.name == "trained")
    untrained = services.adapters.add(AddAdapterRequest(name="random", model_id=registered.model_id, location=str(random_adapter(3))))
    return trained, untrained


def request(registered, *adapter_ids: str | None, **changes) -> EvaluationRequest:
    combos = tuple(Combination(registered.model_id, a) for a in adapter_ids)
    return EvaluationRequest(
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        combinations=combos,
        gpus="cpu",
        generation={"max_new_tokens": 8},
        **changes,
    )


@pytest.mark.slow
def test_base_and_two_adapters_on_the_held_out_split(services, registered, adapters, capsys):
    trained, untrained = adapters
    held_out = json.loads((Path(services.runs.get(trained.run_id).run_dir) / "split.json").read_text())["validation_indices"]
    run = services.evaluations.submit(request(registered, None, trained.id, untrained.id))
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text

    results = services.evaluations.results(run.id)
    assert results.rows_from.startswith(f"held-out split of run {trained.run_id[:8]}")
    assert [r.row_index for r in results.rows] == held_out and results.answers == results.expected == 3 * len(held_out)
    assert all(set(r.outputs) == {1, 2, 3} and r.reference for r in results.rows)
    base, tuned, rand = results.combinations
    assert (base.label, tuned.label, rand.label) == ("tiny", "trained", "random")
    assert all(c.final and set(METRICS) <= set(c.metrics) for c in results.combinations)
    assert base.deltas == {} and tuned.deltas["perplexity"] == pytest.approx(tuned.metrics["perplexity"] - base.metrics["perplexity"])
    # Twenty steps on the intents already beat the base model at predicting the reference answers.
    assert tuned.metrics["perplexity"] < base.metrics["perplexity"]

    events = read_events(Path(final.run_dir) / "events.jsonl").events
    assert events[-1].type == "done" and list(events[-1].data["models_loaded"].values()) == [1]

    import mlflow

    logged = mlflow.MlflowClient(tracking_uri=services.settings.mlflow_tracking_uri).get_run(final.mlflow_run_id).data.metrics
    assert logged["c2.accuracy"] == pytest.approx(tuned.metrics["accuracy"]) and "c3.delta_perplexity" in logged

    assert cli_main(["--home", str(services.settings.home), "runs", "show", run.id]) == 0
    shown = capsys.readouterr().out
    assert "held-out split" in shown and "trained" in shown and "accuracy" in shown


@pytest.mark.slow
def test_malformed_combinations_start_nothing(services, registered, adapters, demo_kit, tmp_path):
    trained, _ = adapters
    copy = tmp_path / "other-model"
    shutil.copytree(demo_kit.model_dir, copy)
    other = services.models.add(AddModelRequest(type="project", name="other", location=str(copy)))
    runs_before = {r.id for r in services.runs.list()}
    dirs_before = set(services.settings.runs_dir.iterdir())
    bad = EvaluationRequest(
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        gpus="cpu",
        combinations=(
            Combination(registered.model_id),
            Combination(registered.model_id, "no-such-adapter"),
            Combination(other.id, trained.id),
        ),
    )
    with pytest.raises(ValidationError) as caught:
        services.evaluations.submit(bad)
    assert caught.value.rule_ids == ["EV-006", "EV-006"]
    assert "was trained on 'tiny', not 'other'" in str(caught.value)
    assert {r.id for r in services.runs.list()} == runs_before and set(services.settings.runs_dir.iterdir()) == dirs_before


def test_without_a_held_out_split_a_seeded_fraction_is_scored(services, registered, random_adapter):
    untrained = services.adapters.add(AddAdapterRequest(name="random", model_id=registered.model_id, location=str(random_adapter(4))))
    problems, rows = services.evaluations.check(request(registered, None, untrained.id, dataset_fraction=0.1, max_rows=5))
    assert problems == [] and len(rows.indices) == 5 and rows.indices == tuple(sorted(rows.indices))
    assert rows == services.evaluations.check(request(registered, None, untrained.id, dataset_fraction=0.1, max_rows=5))[1]
    assert "seed 42" in rows.described and "5 sampled" in rows.described
