"""DPO and GRPO end to end through the services: request → spec → real `python -m trainer dpo|grpo` child on CPU →
events → SQLite → a registered adapter with its lineage. (What the methods learn is shown by
tests/trainer/test_dpo_process.py and test_grpo_process.py; here: that the studio runs them as it runs SFT.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from tests.conftest import TEST_DATA
from trainer.protocol import RewardSpec, read_events

pytestmark = pytest.mark.slow  # starts real trainer processes

DPO_DEMO = TEST_DATA / "dpo_en_demo.json"
QUICK = {"max_steps": 3, "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no", "max_length": 128, "learning_rate": 1e-3}


def test_a_dpo_run_from_a_registered_adapter_trains_on_the_demo_pairs_and_registers_its_adapter(
    services, registered, random_adapter, tmp_path: Path
) -> None:
    short = [row for row in json.loads(DPO_DEMO.read_text()) if sum(len(t["value"]) for t in row["conversations"]) < 200]
    pairs = tmp_path / "dpo_pairs.json"
    pairs.write_text(json.dumps(short[:24]))
    dataset = services.datasets.add(AddDatasetRequest(name="dpo-demo", location=str(pairs)))
    assert dataset.format == "preference"
    start = services.adapters.add(AddAdapterRequest(name="sft-start", model_id=registered.model_id, location=str(random_adapter(11))))

    run, preflight = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model_id,
            dataset_id=dataset.id,
            adapter_name="dpo-demo-adapter",
            gpus="cpu",
            method="dpo",
            method_settings={"beta": 0.1},
            init_adapter_id=start.id,
            overrides={**QUICK, "per_device_train_batch_size": 4},
        )
    )
    assert preflight.fits
    final = services.runs.wait(run.id, timeout_s=300)

    assert final.status == "succeeded", final.error_text
    kinds = [e.type for e in read_events(Path(final.run_dir) / "events.jsonl").events]
    assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("progress") == 3
    series = services.runs.metrics(run.id)
    assert [step for step, _ in series["rewards/margins"]] == [1, 2, 3] and "rewards/accuracies" in series
    [adapter] = [a for a in services.adapters.list() if a.run_id == run.id]
    assert adapter.name == "dpo-demo-adapter" and adapter.model_id == registered.model_id
    assert f"from adapter 'sft-start' ({start.id})" in adapter.description and final.adapter_id == start.id
    assert (Path(adapter.location) / "adapter_model.safetensors").is_file()


def test_a_grpo_run_with_weighted_verifiable_rewards_registers_its_adapter(services, registered, tmp_path: Path) -> None:
    sums = tmp_path / "sums.jsonl"
    sums.write_text(
        "".join(json.dumps({"question": f"What is {a} plus {b}?", "answer": str(a + b)}) + "\n" for a in range(4) for b in range(4))
    )
    dataset = services.datasets.add(AddDatasetRequest(name="sums", location=str(sums)))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="sum-prompt",
            dataset_id=dataset.id,
            prompt_template="Q: {question}\nA: {answer}",
            input_template="Q: {question}\nA: ",
            completion_template="{answer}",
        )
    )

    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model_id,
            dataset_id=dataset.id,
            prompt_id=prompt.id,
            adapter_name="grpo-sums",
            gpus="cpu",
            method="grpo",
            train_test_split=1.0,
            method_settings={"num_generations": 4, "max_completion_length": 6},
            rewards=(RewardSpec("exact_match"), {"kind": "length_penalty", "weight": 0.5, "target_length": 3}),
            overrides={**QUICK, "per_device_train_batch_size": 8},
        )
    )
    final = services.runs.wait(run.id, timeout_s=300)

    assert final.status == "succeeded", final.error_text
    series = services.runs.metrics(run.id)
    for name in ("reward", "rewards/exact_match/mean", "rewards/length_penalty/mean", "completions/mean_length"):
        assert [step for step, _ in series[name]] == [1, 2, 3], name
    # The weighted sum: exact match (0 or 1) plus half the length penalty (<= 0), per logged step.
    for (_, total), (_, exact), (_, length) in zip(
        series["reward"], series["rewards/exact_match/mean"], series["rewards/length_penalty/mean"]
    ):
        assert abs(total - (exact + 0.5 * length)) < 1e-4
    [adapter] = [a for a in services.adapters.list() if a.run_id == run.id]
    assert (adapter.name, adapter.model_id, adapter.prompt_id) == ("grpo-sums", registered.model_id, prompt.id)
    assert adapter.description.startswith("grpo lora run")
