"""Evaluations of DPO and GRPO adapters through the real services: preference pairs, rewards and EV-013."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from cli.main import main as cli_main
from ftapp.datasets.service import AddDatasetRequest
from ftapp.evaluation.request import Combination, EvaluationRequest, validate_evaluation
from ftapp.ids import new_id
from ftapp.models.adapters import AddAdapterRequest
from ftapp.runs.machine import Machine
from ftapp.settings import Settings
from storage import AdapterRecord
from trainer.protocol import SPEC_FILE, DataSource, ModelSource, RewardSpec, TrainSpec

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
GRPO_REWARDS = (RewardSpec("exact_match"), RewardSpec("valid_json", weight=0.5))


def trained_adapter(
    services, registered, random_adapter, tmp_path: Path, name: str, method: str, in_row: bool, **fields: Any
) -> AdapterRecord:
    """A random adapter registered as the output of a finished ``method`` run whose spec has ``fields`` (in the run row,
    or only in its spec.json)."""
    run_dir = tmp_path / f"run-{name}"
    run_dir.mkdir()
    spec = TrainSpec(
        run_id=name,
        run_dir=str(run_dir),
        method=method,
        training_mode="lora",
        model=ModelSource("tiny"),
        data=DataSource("project_jsonl"),
        adapter_name=name,
        training={},
        **fields,
    ).to_dict()
    (run_dir / SPEC_FILE).write_text(json.dumps(spec))
    with services.db.transaction() as tx:
        run = tx.runs.add(
            id=new_id(), kind="finetune", name=name, status="succeeded", run_dir=str(run_dir), spec=json.dumps(spec) if in_row else "{}"
        )
    return services.adapters.add(
        AddAdapterRequest(name=name, model_id=registered.model_id, run_id=run.id, location=str(random_adapter(len(name))))
    )


def grpo_adapter(services, registered, random_adapter, tmp_path) -> AdapterRecord:
    return trained_adapter(
        services,
        registered,
        random_adapter,
        tmp_path,
        "grpo-lora",
        "grpo",
        in_row=True,
        method_settings={"num_generations": 4},
        rewards=GRPO_REWARDS,
    )


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.mark.slow
def test_rewards_default_to_the_grpo_runs_and_score_every_answer(services, registered, random_adapter, tmp_path):
    adapter = grpo_adapter(services, registered, random_adapter, tmp_path)
    request = EvaluationRequest(
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        gpus="cpu",
        combinations=(Combination(registered.model_id), Combination(registered.model_id, adapter.id)),
        generation={"max_new_tokens": 6},
        max_rows=6,
        batch_size=6,
    )
    run = services.evaluations.submit(request)
    assert read_spec_rewards(run) == [r.to_dict() for r in GRPO_REWARDS]
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text

    results = services.evaluations.results(run.id)
    assert len(results.rows) == 6 and all(set(row.outputs) == {1, 2} for row in results.rows)
    for combo in results.combinations:
        # Recomputed from the stored answers, as REWARD_KINDS defines each reward.
        exact = [float(r.outputs[combo.position].strip().casefold() == r.reference.strip().casefold()) for r in results.rows]
        valid = [float(is_json(r.outputs[combo.position])) for r in results.rows]
        totals = [e + 0.5 * v for e, v in zip(exact, valid)]
        assert [r.scores[combo.position]["reward"] for r in results.rows] == pytest.approx(totals)
        assert combo.metrics["reward/exact_match"] == pytest.approx(statistics.fmean(exact))
        assert combo.metrics["reward/valid_json"] == pytest.approx(statistics.fmean(valid))
        assert combo.metrics["reward"] == pytest.approx(statistics.fmean(totals))
        assert combo.metrics["reward_std"] == pytest.approx(statistics.pstdev(totals))
    base, tuned = results.combinations
    assert tuned.deltas["reward"] == pytest.approx(tuned.metrics["reward"] - base.metrics["reward"])

    # Rewards named in the request replace the run's; none named explicitly means none.
    explicit = services.evaluations.submit(
        EvaluationRequest(**{**request.__dict__, "rewards": ({"kind": "regex_match", "pattern": "^[a-z_]+$"},)})
    )
    assert read_spec_rewards(explicit) == [RewardSpec("regex_match", pattern="^[a-z_]+$").to_dict()]
    assert read_spec_rewards(services.evaluations.submit(EvaluationRequest(**{**request.__dict__, "rewards": ()}))) == []


def read_spec_rewards(run) -> list[dict]:
    return json.loads(run.spec)["rewards"]


def test_rewards_are_checked_like_a_grpo_runs(services, registered, tmp_path):
    code = tmp_path / "reward.py"
    code.write_text("def reward(completion, reference, row):\n    return float(len(completion) < 20)\n")
    local = Settings(home=tmp_path / "home")
    shared = Settings(home=tmp_path / "home", demo=True)

    def problems(rewards, settings: Settings | None = local, **changes):
        values = dict(
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
            gpus="cpu",
            combinations=(Combination(registered.model_id),),
            rewards=rewards,
            **changes,
        )
        with services.db.transaction() as tx:
            return [str(p) for p in validate_evaluation(tx, EvaluationRequest(**values), CPU, settings)]

    assert problems(({"kind": "custom_python", "code_path": str(code)}, {"kind": "exact_match", "weight": 2})) == []
    refused = problems(({"kind": "custom_python", "code_path": str(code)},), shared)
    assert len(refused) == 1 and refused[0].startswith("EV-013: reward 1 (custom_python): custom Python rewards are refused")
    assert "demo mode" in refused[0]
    assert problems(({"kind": "bleu"}, {"kind": "regex_match", "pattern": "(x"}, {"kind": "length_penalty"})) == [
        "EV-013: reward 1: unknown kind 'bleu'; use one of "
        + ", ".join(["exact_match", "numeric_match", "regex_match", "valid_json", "length_penalty", "custom_python"]),
        "EV-013: reward 2 (regex_match): pattern '(x' does not compile (missing ), unterminated subpattern at position 0)",
        "EV-013: reward 3 (length_penalty): target_length must be a whole number from 1 to 1,000,000 characters (got None)",
    ]


@pytest.fixture
def preference_dataset(services, demo_kit, tmp_path):
    """The demo intents as preference pairs: the right intent chosen, another one rejected."""
    rows = [json.loads(line) for line in demo_kit.dataset_path.read_text().splitlines()][:40]
    intents = sorted({row["intent"] for row in rows})
    path = tmp_path / "intent-pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Request: {row['request']}\nIntent:",
                    "chosen": f" {row['intent']}",
                    "rejected": f" {intents[(intents.index(row['intent']) + 1) % len(intents)]}",
                }
            )
            + "\n"
            for row in rows
        )
    )
    return services.datasets.add(AddDatasetRequest(name="intent-pairs", location=str(path)))


@pytest.mark.slow
def test_a_dpo_adapter_is_scored_on_preference_pairs_without_a_prompt(
    services, registered, random_adapter, tmp_path, preference_dataset, capsys
):
    assert preference_dataset.format == "preference"
    dpo = trained_adapter(
        services,
        registered,
        random_adapter,
        tmp_path,
        "dpo-lora",
        "dpo",
        in_row=False,
        method_settings={"beta": 0.2, "loss_type": "sigmoid"},
    )
    grpo = grpo_adapter(services, registered, random_adapter, tmp_path)
    request = EvaluationRequest(
        dataset_id=preference_dataset.id,
        prompt_id="",
        gpus="cpu",
        max_rows=5,
        batch_size=4,
        combinations=(Combination(registered.model_id), Combination(registered.model_id, dpo.id)),
    )
    run = services.evaluations.submit(request)
    spec = json.loads(run.spec)
    assert spec["data"]["format"] == "preference" and spec["rewards"] == []
    assert [c["dpo_beta"] for c in spec["combinations"]] == [None, 0.2], "beta read from the DPO run's spec.json"
    # A GRPO adapter's rewards do not apply to pairs; rewards named for them are refused.
    with services.db.transaction() as tx:
        with_grpo = EvaluationRequest(**{**request.__dict__, "combinations": (Combination(registered.model_id, grpo.id),)})
        assert validate_evaluation(tx, with_grpo, CPU, services.settings) == []
        named = EvaluationRequest(**{**request.__dict__, "rewards": ({"kind": "exact_match"},)})
        assert [p.rule_id for p in validate_evaluation(tx, named, CPU, services.settings)] == ["EV-013"]

    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text
    results = services.evaluations.results(run.id)
    assert len(results.rows) == 5 and all(row.pair and row.pair[0].startswith(" ") for row in results.rows)
    base, tuned = results.combinations
    assert {"preference_accuracy", "mean_margin", "mean_logp_chosen", "mean_logp_rejected"} <= set(base.metrics)
    assert "reward_accuracy" not in base.metrics and tuned.metrics["reward_beta"] == 0.2
    margins = [row.scores[2]["reward_margin"] for row in results.rows]
    assert tuned.metrics["reward_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / 5)

    assert cli_main(["--home", str(services.settings.home), "runs", "show", run.id]) == 0
    shown = capsys.readouterr().out
    assert "preference_accuracy" in shown and "reward_accuracy" in shown


def test_the_cli_takes_rewards_in_the_train_syntax(services, registered, capsys):
    args = [
        "--home",
        str(services.settings.home),
        "evaluate",
        "--dataset",
        registered.dataset_id,
        "--prompt",
        registered.prompt_id,
        "--combo",
        registered.model_id,
        "--gpus",
        "cpu",
        "--reward",
        "exact_match",
        "--reward",
        "regex_match:0.5,pattern=([a-z]{1,3}",
    ]
    assert cli_main(args) != 0
    error = capsys.readouterr().err
    # The comma inside {1,3} stays in the pattern, as `train --reward` reads it.
    assert "EV-013: reward 2 (regex_match): pattern '([a-z]{1,3}' does not compile" in error and "reward 1" not in error
    assert services.evaluations.list() == []
