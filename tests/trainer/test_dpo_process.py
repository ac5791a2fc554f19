"""``python -m trainer dpo SPEC`` as the supervisor runs it: real processes on CPU with the demo model and
real preference pairs (LLaMA-Factory's ``dpo_en_demo.json``, sharegpt layout).

The runs start together in one fixture (each spends ~10 s importing torch and TRL): a LoRA run, a run
that continues an existing adapter, and one cancelled mid-training.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import TEST_DATA
from tests.trainer.test_sft_process import TrainerProcess, _terminate_once_training
from trainer.protocol import DONE_MARKER, EXIT_CANCELLED, SPLIT_FILE, TrainSpec
from trainer.recipes.dpo_process import check_spec

DPO_DEMO = TEST_DATA / "dpo_en_demo.json"
MAX_LENGTH = 128
DPO_TRAINING = {"max_steps": 12, "max_length": MAX_LENGTH, "learning_rate": 1e-3, "eval_steps": 6, "save_steps": 6}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """40 pairs of the demo file whose prompt is short enough to leave room for the answers in 128 tokens."""
    rows = [row for row in json.loads(DPO_DEMO.read_text()) if sum(len(t["value"]) for t in row["conversations"]) < 200]
    path = tmp_path_factory.mktemp("pairs") / "dpo_pairs.json"
    path.write_text(json.dumps(rows[:40]))
    return path


@pytest.fixture(scope="module")
def dpo_spec(make_spec, pairs: Path):
    def make(run_dir: Path, training: dict | None = None, **fields) -> TrainSpec:
        data = {
            "kind": "project_json",
            "path": str(pairs),
            "format": "preference",
            "prompt_template": None,
            "input_template": None,
            "completion_template": None,
            "train_split": 0.8,
        }
        return make_spec(run_dir, data=data, training={**DPO_TRAINING, **(training or {})}, **{"method": "dpo", **fields})

    return make


@pytest.fixture(scope="module")
def runs(dpo_spec, random_adapter, tmp_path_factory) -> Iterator[dict[str, TrainerProcess]]:
    base = tmp_path_factory.mktemp("dpo")
    started = {
        "lora": TrainerProcess(dpo_spec(base / "lora")),
        "continued": TrainerProcess(
            dpo_spec(
                base / "continued",
                init_adapter=str(random_adapter(7)),
                training={"max_steps": 3, "save_strategy": "no", "eval_strategy": "no"},
            )
        ),
        "cancelled": TrainerProcess(dpo_spec(base / "cancelled", training={"max_steps": 5000, "save_strategy": "no"})),
    }
    threading.Thread(target=_terminate_once_training, args=(started["cancelled"],), daemon=True).start()
    yield started
    for trainer in started.values():
        trainer.kill()


@pytest.mark.slow
def test_a_dpo_run_reports_preference_metrics_in_the_documented_order(runs) -> None:
    run = runs["lora"].wait()
    assert run.code == 0, run.stderr
    types = " ".join(run.types())
    assert types.startswith("started progress") and types.endswith("sample artifact done"), types
    started = run.events[0].data
    assert (started["num_train_rows"], started["num_eval_rows"], started["data_layout"]) == (32, 8, "chat_preference")
    assert any("SFT-only" in note for note in started["notes"])  # padding-free from the config, turned off

    progress = run.of_type("progress")
    assert [event.data["step"] for event in progress] == list(range(1, 13))
    for event in progress:
        metrics = event.data["metrics"]
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "pairs_per_s"} <= set(metrics)
        assert metrics["pairs_per_s"] > 0 and 0 <= metrics["rewards/accuracies"] <= 1
    # The first step sees the untouched adapter: the policy is the reference, every reward is zero.
    assert progress[0].data["metrics"]["rewards/margins"] == 0.0
    evals = run.of_type("eval")
    assert [event.data["step"] for event in evals] == [6, 12]
    assert all("eval_rewards/margins" in event.data and event.data["eval_loss"] > 0 for event in evals)
    checkpoints = [e.data for e in run.of_type("artifact") if e.data["kind"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [6, 12]
    (sample,) = run.of_type("sample")
    assert len(sample.data["rows"]) == 3 and all(row["reference"] for row in sample.data["rows"])
    assert run.stdout.splitlines()[-1] == DONE_MARKER
    assert json.loads((Path(runs["lora"].spec.run_dir) / SPLIT_FILE).read_text())["num_validation"] == 8


@pytest.mark.slow
def test_dpo_raises_the_chosen_over_rejected_margin_on_the_training_pairs(runs, demo_kit) -> None:
    run = runs["lora"].wait()
    margins = [event.data["metrics"]["rewards/margins"] for event in run.of_type("progress")]
    assert sum(margins[-4:]) / 4 > sum(margins[:4]) / 4 + 0.2, margins

    # Measured here, not by TRL: log p(chosen) - log p(rejected) under the adapter vs the base model,
    # on the pairs as TRL tokenizes them (trainer.data.preference_pairs) and truncates them (max_length).
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data.loading import load_rows
    from trainer.data.preference_pairs import pair_ids, preference_cases

    spec = runs["lora"].spec
    validation = set(json.loads((Path(spec.run_dir) / SPLIT_FILE).read_text())["validation_indices"])
    rows = load_rows(spec.data)
    tokenizer = AutoTokenizer.from_pretrained(demo_kit.model_dir)
    cases = preference_cases(rows, [i for i in range(len(rows)) if i not in validation], spec.data, tokenizer)
    encoded = [pair_ids(tokenizer, case) for case in cases]

    def answer_logp(model, prompt: list[int], answer: list[int]) -> float:
        ids = torch.tensor([(prompt + answer)[:MAX_LENGTH]])
        with torch.no_grad():
            logps = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        return logps[len(prompt) - 1 :].sum().item()

    def margins_of(model) -> list[float]:
        return [answer_logp(model, p, c) - answer_logp(model, p, r) for p, c, r in encoded]

    base = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir).eval()
    before = margins_of(base)
    after = margins_of(PeftModel.from_pretrained(base, spec.output_dir).eval())
    gains = [a - b for a, b in zip(after, before)]
    assert len(gains) == 32
    assert sum(gains) / len(gains) > 1.0, gains  # nats, summed over each answer
    assert sum(gain > 0 for gain in gains) >= 24


@pytest.mark.slow
def test_a_dpo_run_saves_a_trained_adapter(runs) -> None:
    run = runs["lora"].wait()
    output = Path(runs["lora"].spec.output_dir)
    assert run.events[-2].data == {"kind": "adapter", "path": str(output)}
    lora_b = {name: t for name, t in load_file(output / "adapter_model.safetensors").items() if "lora_B" in name}
    assert len(lora_b) == 2 * 7 and all(tensor.abs().sum() > 0 for tensor in lora_b.values())  # PEFT starts them at zero


@pytest.mark.slow
def test_a_dpo_run_continues_an_adapter_against_a_frozen_copy_of_it(runs, random_adapter) -> None:
    run = runs["continued"].wait()
    assert run.code == 0, run.stderr
    started = run.events[0].data
    assert any("continuing the adapter" in note for note in started["notes"])
    first = run.of_type("progress")[0].data["metrics"]
    # The random adapter moves the model away from the base, yet step 1's rewards are zero: the
    # reference is the adapter as it started, not the base model.
    assert (first["rewards/chosen"], first["rewards/rejected"]) == (0.0, 0.0)
    output = Path(runs["continued"].spec.output_dir)
    assert not (output / "ref").exists()  # TRL's reference copy is not part of the result
    start = load_file(Path(random_adapter(7)) / "adapter_model.safetensors")
    trained = load_file(output / "adapter_model.safetensors")
    assert trained.keys() == start.keys()
    moved = [(trained[k] - start[k]).norm() / start[k].norm() for k in start if "lora_B" in k]
    assert all(0 < m < 1 for m in moved), moved  # trained further from the adapter, not from scratch


@pytest.mark.slow
def test_sigterm_during_dpo_training_checkpoints_and_exits_143(runs) -> None:
    run = runs["cancelled"].wait()
    assert run.code == EXIT_CANCELLED, run.stderr
    assert "done" not in run.types() and "failed" not in run.types()
    checkpoint = run.events[-1]
    assert checkpoint.type == "artifact" and checkpoint.data["kind"] == "checkpoint"
    assert (Path(checkpoint.data["path"]) / "trainer_state.json").is_file()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": "sft"}, "runs method 'dpo' only"),
        ({"data": {"format": "plain"}}, "expected 'preference'"),
        ({"method_settings": {"beta": 0, "loss_type": "kto"}}, "beta must be above 0.*loss_type must be one of"),
        ({"method_settings": {"gamma": 1}}, "unknown setting 'gamma'"),
        ({"init_adapter": "/nowhere"}, "not an adapter directory"),
        ({"init_adapter": "/nowhere", "training_mode": "full"}, "continues a LoRA adapter"),
    ],
)
def test_specs_dpo_cannot_run_are_refused_before_any_ml_import(dpo_spec, tmp_path: Path, fields: dict, message: str) -> None:
    data = fields.pop("data", None)
    spec = dpo_spec(tmp_path / "bad", **fields)
    if data:
        from dataclasses import replace

        spec = replace(spec, data=replace(spec.data, **data))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_spec(spec)
