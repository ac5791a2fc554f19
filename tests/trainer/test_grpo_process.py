"""``python -m trainer grpo SPEC`` as the supervisor runs it: real processes on CPU with the demo model.

Two things are shown. Every reward kind runs inside a real run and reports under its own name
(one run with five weighted rewards, validation and checkpoints). And GRPO learns from a reward:
the realistic SFT → RL flow on a tiny arithmetic set, where a short SFT run teaches the answer
format (a number and a stop) and leaves the sums mostly wrong, then GRPO with only the exact-match
reward raises the share of right answers. The demo model has never learned to add, so what it
gains comes from the reward.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.trainer.test_sft_process import TrainerProcess
from trainer.protocol import DONE_MARKER, RewardSpec, TrainSpec
from trainer.recipes.grpo_process import check_spec

SUMS = [(1, 2), (2, 2), (2, 3), (3, 4)]  # four different answers: saying one number scores at most 1/4
ARITHMETIC = {
    "kind": "project_jsonl",
    "format": "plain",
    "prompt_template": "Q: {question}\nA: {answer}",
    "input_template": "Q: {question}\nA: ",
    "completion_template": "{answer}",
    "train_split": 1.0,
}
CUSTOM_REWARD = "def reward(completion, reference, row):\n    return 1.0 if row['intent'] in completion else 0.0\n"


@pytest.fixture(scope="module")
def sums(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sums") / "sums.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {a} plus {b}?", "answer": str(a + b)}) + "\n" for a, b in SUMS))
    return path


def grpo_spec(make_spec, run_dir: Path, rewards: list[RewardSpec], settings: dict, training: dict, **fields) -> TrainSpec:
    return make_spec(
        run_dir,
        method="grpo",
        rewards=tuple(rewards),
        method_settings=settings,
        training={"save_strategy": "no", "eval_strategy": "no", **training},
        **fields,
    )


@pytest.fixture(scope="module")
def runs(make_spec, sums: Path, tmp_path_factory) -> Iterator[dict[str, TrainerProcess]]:
    base = tmp_path_factory.mktemp("grpo")
    code = base / "intent_reward.py"
    code.write_text(CUSTOM_REWARD)
    rewards = [
        RewardSpec("exact_match"),
        RewardSpec("regex_match", weight=0.5, pattern=r"^\s*[a-z_]+\s*$"),
        RewardSpec("regex_match", weight=0.5, pattern="_"),
        RewardSpec("length_penalty", weight=0.5, target_length=12),
        RewardSpec("custom_python", weight=0.1, code_path=str(code)),
    ]
    started = {
        "rewards": TrainerProcess(
            grpo_spec(
                make_spec,
                base / "rewards",
                rewards,
                {"num_generations": 4, "max_completion_length": 8, "beta": 0.04},
                {
                    "max_steps": 4,
                    "per_device_train_batch_size": 8,
                    "per_device_eval_batch_size": 6,
                    "eval_strategy": "steps",
                    "eval_steps": 2,
                    "save_strategy": "steps",
                    "save_steps": 2,
                },
                data={"fraction": 0.1, "train_split": 0.75},
            )
        ),
        # The SFT half of SFT → RL: enough to answer with a number, not enough to add.
        "sft": TrainerProcess(
            make_spec(
                base / "sft",
                data={**ARITHMETIC, "path": str(sums)},
                training={
                    "max_steps": 28,
                    "learning_rate": 3e-3,
                    "per_device_train_batch_size": 4,
                    "save_strategy": "no",
                    "eval_strategy": "no",
                },
            )
        ),
    }
    sft = started["sft"].wait()
    assert sft.code == 0, sft.stderr
    started["learning"] = TrainerProcess(
        grpo_spec(
            make_spec,
            base / "learning",
            [RewardSpec("exact_match")],
            {"num_generations": 16, "max_completion_length": 4, "beta": 0.04},
            {"max_steps": 30, "learning_rate": 1e-3, "per_device_train_batch_size": 64},
            data={**ARITHMETIC, "path": str(sums)},
            init_adapter=str(started["sft"].spec.output_dir),
        )
    )
    # The same run sampled by the graphed engine (issue 19; on a CPU its decode steps run eagerly): it must learn as well.
    started["learning_graphed"] = TrainerProcess(
        replace(started["learning"].spec, run_id="learning_graphed", run_dir=str(_fresh(base / "learning_graphed"))),
        env={"FTAPP_GRPO_GENERATION": "graphed"},
    )
    yield started
    for trainer in started.values():
        trainer.kill()


@pytest.mark.slow
def test_every_reward_kind_reports_under_its_own_name_in_a_grpo_run(runs) -> None:
    run = runs["rewards"].wait()
    assert run.code == 0, run.stderr
    types = " ".join(run.types())
    assert types.startswith("started progress") and types.endswith("sample artifact done"), types
    started = run.events[0].data
    assert started["reward_names"] == ["exact_match", "regex_match", "regex_match_2", "length_penalty", "custom_python"]
    assert (started["num_train_rows"], started["num_eval_rows"]) == (24, 8)
    assert "per_device_eval_batch_size raised from 6 to 8: a multiple of num_generations (4)" in started["notes"]

    progress = run.of_type("progress")
    assert [event.data["step"] for event in progress] == [1, 2, 3, 4]
    for event in progress:
        metrics = event.data["metrics"]
        for name in started["reward_names"]:
            assert f"rewards/{name}/mean" in metrics and f"rewards/{name}/std" in metrics
        assert {"reward", "reward_std", "kl", "completions/mean_length", "generations_per_s"} <= set(metrics)
        assert 0 < metrics["completions/mean_length"] <= 8 and metrics["generations_per_s"] > 0
        assert metrics["rewards/length_penalty/mean"] <= 0 <= metrics["rewards/regex_match/mean"] <= 1
        # TRL's total is the weighted sum of the rewards' means, with the weights from the spec.
        weighted = sum(w * metrics[f"rewards/{n}/mean"] for n, w in zip(started["reward_names"], (1, 0.5, 0.5, 0.5, 0.1)))
        assert metrics["reward"] == pytest.approx(weighted, abs=1e-4)
    assert [event.data["step"] for event in run.of_type("eval")] == [2, 4]
    assert all("eval_reward" in event.data for event in run.of_type("eval"))
    assert [e.data["step"] for e in run.of_type("artifact") if e.data["kind"] == "checkpoint"] == [2, 4]
    (sample,) = run.of_type("sample")
    assert len(sample.data["rows"]) == 3 and all(row["input"].startswith("### Request:") for row in sample.data["rows"])
    output = Path(runs["rewards"].spec.output_dir)
    lora_b = [t for name, t in load_file(output / "adapter_model.safetensors").items() if "lora_B" in name]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # PEFT starts them at zero
    assert run.stdout.splitlines()[-1] == DONE_MARKER


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["learning", "learning_graphed"])
def test_grpo_after_sft_raises_the_exact_match_reward(runs, engine: str) -> None:
    run = runs[engine].wait()
    assert run.code == 0, run.stderr
    assert any("continuing the adapter" in note for note in run.events[0].data["notes"])
    # The started event names the engine: the preflight paces later GRPO runs by the runs that sampled with it.
    assert run.events[0].data["generation_engine"] == ("graphed" if engine == "learning_graphed" else "generate")
    rewards = [event.data["metrics"]["rewards/exact_match/mean"] for event in run.of_type("progress")]
    assert len(rewards) == 30
    early, late = sum(rewards[:5]) / 5, sum(rewards[-10:]) / 10
    # Measured rewards: each step scores 64 sampled answers (16 per sum) against the reference. Above
    # 1/4, the answers depend on the question: no single number is right for more than one sum.
    assert late > early + 0.05 and late > 0.25, rewards
    assert run.of_type("progress")[-1].data["metrics"]["kl"] > 0  # the policy moved away from the SFT adapter
    output = Path(runs[engine].spec.output_dir)
    assert (output / "adapter_model.safetensors").is_file() and not (output / "ref").exists()
    engine_notes = [note for note in run.events[0].data["notes"] if "samples its completions" in note]
    assert engine_notes == [f"GRPO samples its completions with the {'graphed' if engine.endswith('graphed') else 'generate'!r} engine"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rewards": ()}, "spec.rewards is empty"),
        ({"rewards": (RewardSpec("custom_python", code_path="/nowhere.py"),)}, "custom reward file not found"),
        ({"rewards": (RewardSpec("bleu"),)}, "unknown kind 'bleu'"),
        ({"data": {"input_template": None, "completion_template": None}}, "exact_match compares with each row's answer"),
        ({"data": {"format": "preference"}}, "trains with DPO"),
        ({"method_settings": {"num_generations": 3}}, r"\(8 × 1 × 1\) must be a multiple of num_generations \(3\)"),
        ({"method_settings": {"num_generations": 1, "temperature": 0}}, "num_generations must be at least 2.*temperature must be above 0"),
    ],
)
def test_specs_grpo_cannot_run_are_refused_before_any_ml_import(make_spec, tmp_path: Path, fields: dict, message: str) -> None:
    spec = grpo_spec(make_spec, tmp_path / "bad", [RewardSpec("exact_match")], {}, {})
    data = fields.pop("data", None)
    spec = replace(spec, **fields)
    if data:
        spec = replace(spec, data=replace(spec.data, **data))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_spec(spec)
