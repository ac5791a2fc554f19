"""DPO and GRPO runs on the service side: the spec they get, their preflight, their metrics and their adapter's lineage.

The trainer is not run here: the supervisor is handed a finished run's files, as in tests/ftapp/test_runs.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.runs.devices import DeviceChoice
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.machine import Machine
from ftapp.runs.memory import ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER, KV_BYTES_PER_TOKEN_PER_KV_UNIT
from ftapp.runs.preflight import CHARS_PER_TOKEN, estimate
from storage.types import utc_now
from trainer.protocol import RewardSpec, read_spec

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
MIB = 1024 * 1024


@pytest.fixture
def preference(services, tmp_path: Path) -> str:
    rows = [{"prompt": f"Greet person {i}", "chosen": f"Hello, person {i}!", "rejected": "Go away."} for i in range(12)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return services.datasets.add(AddDatasetRequest(name="pairs", location=str(path))).id


@pytest.fixture
def start_adapter(services, registered, tmp_path: Path):
    folder = tmp_path / "sft-adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    return services.adapters.add(AddAdapterRequest(name="sft-start", model_id=registered.model_id, location=str(folder)))


def dpo_request(registered, preference: str, **changes) -> FineTuneRequest:
    values = dict(
        base_model_id=registered.model_id,
        dataset_id=preference,
        adapter_name="dpo-adapter",
        gpus="cpu",
        method="dpo",
        method_settings={"beta": 0.2},
    )
    return FineTuneRequest(**{**values, **changes})


def test_a_dpo_run_gets_its_settings_with_defaults_and_the_adapter_it_starts_from(services, registered, preference, start_adapter) -> None:
    run, preflight = services.runs.submit(dpo_request(registered, preference, init_adapter_id=start_adapter.id))

    spec = read_spec(Path(run.run_dir) / "spec.json")
    assert (spec.method, spec.verb, spec.data.format) == ("dpo", "dpo", "preference")
    assert spec.method_settings == {"beta": 0.2, "loss_type": "sigmoid"}
    assert spec.init_adapter == start_adapter.location and spec.rewards == ()
    assert run.adapter_id == start_adapter.id  # where the run starts, for lineage
    assert preflight.fits and preflight.memory.activations_mib > 0


def test_a_grpo_run_gets_its_rewards_and_a_custom_file_as_an_absolute_path(services, registered, tmp_path, monkeypatch) -> None:
    (tmp_path / "score.py").write_text("def reward(completion, reference, row):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    rewards = (
        {"kind": "exact_match"},
        RewardSpec("regex_match", weight=0.5, pattern=r"^\w+$"),
        {"kind": "custom_python", "weight": 0.25, "code_path": "score.py"},
    )
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="grpo-adapter",
        gpus="cpu",
        method="grpo",
        rewards=rewards,
        method_settings={"num_generations": 2, "max_completion_length": 16},
    )

    run, _ = services.runs.submit(request)

    spec = read_spec(Path(run.run_dir) / "spec.json")
    assert spec.method == "grpo" and spec.init_adapter is None and run.adapter_id is None
    assert spec.method_settings == {"num_generations": 2, "max_completion_length": 16, "temperature": 1.0, "beta": 0.0}
    assert spec.rewards == (
        RewardSpec("exact_match"),
        RewardSpec("regex_match", weight=0.5, pattern=r"^\w+$"),
        RewardSpec("custom_python", weight=0.25, code_path=str(tmp_path / "score.py")),
    )
    assert (spec.data.input_template, spec.data.completion_template) == (
        registered.prompt.input_template,
        registered.prompt.completion_template,
    )


# -- preflight: what each method holds in memory ------------------------------------------------------

ROWS = [{"prompt": "p" * 40, "chosen": "c" * 80, "rejected": "r" * 80}] * 5
MODEL = dict(num_parameters=10_000_000, hidden_size=256, num_layers=4, devices=DeviceChoice("cpu"), machine=CPU)
TRAINING = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}


def test_dpo_holds_chosen_and_rejected_so_twice_the_activations_of_one_answer() -> None:
    sft = estimate(training_mode="lora", training=TRAINING, train_rows=100, sample_rows=ROWS, template="{prompt}{chosen}", **MODEL)
    dpo = estimate(training_mode="lora", training=TRAINING, train_rows=100, sample_rows=ROWS, template=None, method="dpo", **MODEL)

    per_sequence = (40 + 80) / CHARS_PER_TOKEN  # prompt + one answer
    assert sft.memory.activations_mib == pytest.approx(4 * per_sequence * 256 * 4 * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER / MIB)
    assert dpo.memory.activations_mib == pytest.approx(2 * sft.memory.activations_mib)
    assert dpo.train_tokens == 2 * sft.train_tokens
    assert dpo.memory.weights_mib == sft.memory.weights_mib and dpo.memory.reference_mib == 0  # LoRA: the base is the reference
    full = estimate(training_mode="full", training=TRAINING, train_rows=100, sample_rows=ROWS, template=None, method="dpo", **MODEL)
    assert full.memory.reference_mib == pytest.approx(full.memory.weights_mib)  # a frozen copy of every weight


def test_grpo_holds_a_batch_of_generations_and_their_kv_cache() -> None:
    settings = {"num_generations": 4, "max_completion_length": 100}
    grpo = estimate(
        training_mode="lora",
        training=TRAINING,
        train_rows=100,
        sample_rows=ROWS,
        template=None,
        input_template="{prompt}",
        method="grpo",
        method_settings=settings,
        kv_units=64,
        **MODEL,
    )

    per_sequence = 40 / CHARS_PER_TOKEN + 100  # the prompt and a whole completion
    assert grpo.memory.activations_mib == pytest.approx(4 * per_sequence * 256 * 4 * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN_LAYER / MIB)
    # The generation batch is batch × gradient accumulation sequences, cached at 64 key/value units per layer.
    assert grpo.memory.generation_mib == pytest.approx(int(4 * 2 * per_sequence) * 4 * 64 * KV_BYTES_PER_TOKEN_PER_KV_UNIT / MIB)
    assert grpo.train_tokens == int(100 * 4 * per_sequence)  # every prompt, num_generations times
    more = estimate(
        training_mode="lora",
        training=TRAINING,
        train_rows=100,
        sample_rows=ROWS,
        template=None,
        input_template="{prompt}",
        method="grpo",
        method_settings={**settings, "max_completion_length": 200},
        kv_units=64,
        **MODEL,
    )
    assert more.memory.generation_mib > grpo.memory.generation_mib and more.seconds > grpo.seconds
    kl = estimate(
        training_mode="full",
        training=TRAINING,
        train_rows=100,
        sample_rows=ROWS,
        template=None,
        method="grpo",
        method_settings={"beta": 0.04},
        **MODEL,
    )
    assert kl.memory.reference_mib == pytest.approx(kl.memory.weights_mib)


# -- metrics and lineage --------------------------------------------------------------------------------


def finished_run(services, run, events: list[dict]) -> None:
    """The run as its trainer would leave it: events written, adapter saved, process gone."""
    run_dir = Path(run.run_dir)
    output = run_dir / "output"
    output.mkdir()
    (output / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    lines = [
        {"type": "started", "time": 1.0, "total_steps": 2},
        *events,
        {"type": "artifact", "time": 9.0, "kind": "adapter", "path": str(output)},
        {"type": "done", "time": 10.0},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run_dir / "trainer.log").write_text("JOB_DONE\n")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    with services.db.transaction() as tx:
        tx.runs.update(run.id, status="running", pid=exited.pid, process_start_time=1.0, started_at=utc_now())


def test_a_dpo_run_stores_its_metrics_and_registers_its_adapter_with_lineage(services, registered, preference, start_adapter) -> None:
    run, _ = services.runs.submit(dpo_request(registered, preference, init_adapter_id=start_adapter.id))
    metrics = {
        "rewards/chosen": 0.25,
        "rewards/rejected": -0.5,
        "rewards/margins": 0.75,
        "rewards/accuracies": 1.0,
        "pairs_per_s": 3.5,
        "nan": float("inf"),
        "flag": True,
        "text": "x",
    }
    finished_run(
        services,
        run,
        [
            {"type": "progress", "time": 2.0, "step": 1, "total_steps": 2, "loss": 0.69, "metrics": metrics},
            {"type": "progress", "time": 3.0, "step": 2, "total_steps": 2, "loss": 0.5, "metrics": {"rewards/margins": 1.5}},
        ],
    )

    services.supervisor.tick()

    final = services.runs.get(run.id)
    assert final.status == "succeeded", final.error_text
    series = services.runs.metrics(run.id)
    assert series["rewards/margins"] == [(1, 0.75), (2, 1.5)] and series["loss"] == [(1, 0.69), (2, 0.5)]
    assert {name: points for name, points in series.items() if name.startswith("rewards/") or name == "pairs_per_s"} == {
        "rewards/chosen": [(1, 0.25)],
        "rewards/rejected": [(1, -0.5)],
        "rewards/margins": [(1, 0.75), (2, 1.5)],
        "rewards/accuracies": [(1, 1.0)],
        "pairs_per_s": [(1, 3.5)],
    }
    assert not {"nan", "flag", "text"} & set(series)  # not finite numbers: skipped
    [adapter] = [a for a in services.adapters.list() if a.run_id == run.id]
    assert (adapter.name, adapter.model_id, adapter.location) == ("dpo-adapter", registered.model_id, str(Path(run.run_dir) / "output"))
    assert adapter.description == f"dpo lora run {run.id}, from adapter 'sft-start' ({start_adapter.id})"
    assert final.adapter_id == start_adapter.id
