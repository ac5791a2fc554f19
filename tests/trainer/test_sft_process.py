"""``python -m trainer sft SPEC`` as the supervisor runs it: a real process on CPU with the demo kit.

Each process spends ~10 s importing torch, transformers and peft before a few seconds of training,
so the runs of this module start together in one fixture and the tests wait for the run they
check; on two cores that halves the wall time. Only the resume run starts later: it needs the
LoRA run's checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trainer.data.loading import split_rows
from trainer.protocol import DONE_MARKER, EXIT_CANCELLED, PROGRESS_PREFIX, SPLIT_FILE, Event, TrainSpec, read_events, write_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str
    events: list[Event]

    def of_type(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.type == kind]

    def types(self) -> list[str]:
        return [event.type for event in self.events]


class TrainerProcess:
    def __init__(self, spec: TrainSpec, env: dict[str, str] | None = None):
        self.spec = spec
        self.run_dir = Path(spec.run_dir)
        spec_path = write_spec(spec)
        self._stdout = open(self.run_dir / "stdout.txt", "w+")  # files, not pipes: nobody drains a pipe while we wait
        self._stderr = open(self.run_dir / "stderr.txt", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainer", spec.verb, str(spec_path)],  # sft, dpo or grpo: the spec's method
            cwd=REPO_ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._finished: Finished | None = None

    def events(self) -> list[Event]:
        return read_events(self.run_dir / "events.jsonl").events

    def wait(self) -> Finished:
        if self._finished is None:
            code = self.process.wait(timeout=RUN_TIMEOUT_S)
            self._stdout.seek(0)
            self._stderr.seek(0)
            self._finished = Finished(code, self._stdout.read(), self._stderr.read(), self.events())
            self._stdout.close()
            self._stderr.close()
        return self._finished

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _terminate_once_training(trainer: TrainerProcess) -> None:
    """SIGTERM as the supervisor's cancel sends it, as soon as the run has reported a training step."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline and trainer.process.poll() is None:
        if any(event.type == "progress" for event in trainer.events()):
            trainer.process.send_signal(signal.SIGTERM)
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def runs(make_spec, messages_dataset: Path, tmp_path_factory) -> Iterator[dict[str, TrainerProcess]]:
    base = tmp_path_factory.mktemp("sft")
    started = {
        "lora": TrainerProcess(make_spec(base / "lora", mlflow_tracking_uri=f"sqlite:///{base / 'mlflow.db'}")),
        "messages": TrainerProcess(
            make_spec(
                base / "messages",
                training={"max_steps": 4, "eval_steps": 2, "save_strategy": "no"},
                data={
                    "path": str(messages_dataset),
                    "format": "messages",
                    "prompt_template": None,
                    "input_template": None,
                    "completion_template": None,
                },
            )
        ),
        "full": TrainerProcess(
            make_spec(base / "full", training_mode="full", lora={}, training={"max_steps": 3, "learning_rate": 1e-3, "save_strategy": "no"})
        ),
        "oom": TrainerProcess(make_spec(base / "oom"), env={"FTAPP_TRAINER_FAULT": "cuda_oom_at_step=3"}),
        "oom_once": TrainerProcess(
            make_spec(base / "oom_once", training={"max_steps": 4, "save_strategy": "no", "eval_strategy": "no"}),
            env={"FTAPP_TRAINER_FAULT": "cuda_oom_once_at_step=3"},
        ),
        # Far more steps than it will run: it is cancelled once training is under way.
        "cancelled": TrainerProcess(make_spec(base / "cancelled", training={"max_steps": 5000, "save_strategy": "no"})),
    }
    threading.Thread(target=_terminate_once_training, args=(started["cancelled"],), daemon=True).start()
    yield started
    for trainer in started.values():
        trainer.kill()


@pytest.mark.slow
def test_a_lora_run_reports_its_events_in_the_documented_order(runs) -> None:
    run = runs["lora"].wait()
    assert run.code == 0, run.stderr
    assert re.fullmatch(r"started( (progress|eval|artifact))+ sample artifact done", " ".join(run.types())), run.types()

    started = run.events[0].data
    assert (started["device"], started["total_steps"], started["resumed_from_step"]) == ("cpu", 6, None)
    assert (started["num_train_rows"], started["num_eval_rows"]) == (288, 32)
    assert 0 < started["trainable_params"] < started["total_params"]
    assert started["mlflow_run_id"]

    progress = run.of_type("progress")
    assert [event.data["step"] for event in progress] == [1, 2, 3, 4, 5, 6]
    for event in progress:
        assert event.data["total_steps"] == 6 and isinstance(event.data["loss"], float)
        assert {"epoch", "lr", "grad_norm", "tokens_per_s", "eta_s"} <= set(event.data)
    assert progress[-1].data["loss"] < progress[0].data["loss"] / 2

    assert [event.data["step"] for event in run.of_type("eval")] == [3, 6]
    assert all(event.data["eval_loss"] > 0 for event in run.of_type("eval"))
    checkpoints = [event.data for event in run.of_type("artifact") if event.data["kind"] == "checkpoint"]
    assert [(c["step"], Path(c["path"]).name) for c in checkpoints] == [(3, "checkpoint-3"), (6, "checkpoint-6")]
    (sample,) = run.of_type("sample")
    assert len(sample.data["rows"]) == 3
    assert all(set(row) == {"input", "reference", "output"} and row["input"].startswith("### Request:") for row in sample.data["rows"])


@pytest.mark.slow
def test_a_lora_run_saves_a_trained_adapter_before_it_says_done(runs) -> None:
    run = runs["lora"].wait()
    output = Path(runs["lora"].spec.output_dir)
    assert run.events[-2].data == {"kind": "adapter", "path": str(output)}
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (output / name).is_file(), name
    # lora_B starts at zero (PEFT's init), so a non-zero lora_B proves training moved every adapter.
    lora_b = {name: tensor for name, tensor in load_file(output / "adapter_model.safetensors").items() if "lora_B" in name}
    assert len(lora_b) == 2 * 7  # two layers x (q, k, v, o, gate, up, down)
    assert all(tensor.abs().sum() > 0 for tensor in lora_b.values())

    lines = run.stdout.splitlines()
    assert lines.count(DONE_MARKER) == 1 and lines[-1] == DONE_MARKER
    assert [line for line in lines if line.startswith(PROGRESS_PREFIX)] == lines[:-1]  # nothing else on stdout
    assert len(lines) - 1 == len(run.of_type("progress"))


@pytest.mark.slow
def test_a_lora_run_writes_its_split_and_its_loss_history_to_mlflow(runs) -> None:
    run = runs["lora"].wait()
    spec = runs["lora"].spec
    split = json.loads((Path(spec.run_dir) / SPLIT_FILE).read_text())
    expected = split_rows(320, fraction=1.0, train_split=0.9, seed=0)
    assert split["validation_indices"] == expected.validation_indices
    assert (split["num_rows"], split["num_train"], split["num_validation"]) == (320, 288, 32)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=spec.mlflow_tracking_uri)
    mlflow_run = client.get_run(run.events[0].data["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["training.learning_rate"] == "0.005"
    history = client.get_metric_history(mlflow_run.info.run_id, "loss")
    assert [(m.step, round(m.value, 5)) for m in history] == [(e.data["step"], round(e.data["loss"], 5)) for e in run.of_type("progress")]
    assert [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "eval_loss")] == [3, 6]
    artifacts = {item.path for item in client.list_artifacts(mlflow_run.info.run_id, "output")}
    assert "output/adapter_model.safetensors" in artifacts
    # The artifacts live next to the database, where the app's `mlflow ui` looks.
    assert mlflow_run.info.artifact_uri.startswith((Path(spec.mlflow_tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri())


@pytest.mark.slow
def test_a_run_resumed_from_a_checkpoint_continues_from_its_step(runs, make_spec, tmp_path: Path) -> None:
    first = runs["lora"].wait()
    checkpoint = next(e.data["path"] for e in first.of_type("artifact") if e.data.get("step") == 3)
    resumed = TrainerProcess(make_spec(tmp_path / "resumed", resume_from=checkpoint)).wait()
    assert resumed.code == 0, resumed.stderr
    assert resumed.events[0].data["resumed_from_step"] == 3
    assert [e.data["step"] for e in resumed.of_type("progress")] == [4, 5, 6]
    # Model, optimizer, scheduler, RNG and data order come back: the same losses as the unbroken run.
    original = {e.data["step"]: e.data["loss"] for e in first.of_type("progress")}
    for event in resumed.of_type("progress"):
        assert event.data["loss"] == pytest.approx(original[event.data["step"]], rel=1e-4)
    assert resumed.types()[-1] == "done"


@pytest.mark.slow
def test_messages_data_trains_as_chat(runs) -> None:
    run = runs["messages"].wait()
    assert run.code == 0, run.stderr
    assert run.events[0].data["data_layout"] == "chat_prompt_completion"
    losses = [event.data["loss"] for event in run.of_type("progress")]
    assert len(losses) == 4 and losses[-1] < losses[0]
    (sample,) = run.of_type("sample")
    # The sample shows the user's request, not the rendered chat markup.
    assert not sample.data["rows"][0]["input"].startswith("<s>")
    assert (Path(runs["messages"].spec.output_dir) / "adapter_model.safetensors").is_file()
    assert run.types()[-2:] == ["artifact", "done"]


@pytest.mark.slow
def test_full_fine_tuning_saves_a_model_that_loads(runs, demo_kit) -> None:
    run = runs["full"].wait()
    assert run.code == 0, run.stderr
    output = Path(runs["full"].spec.output_dir)
    assert run.events[-2].data == {"kind": "model", "path": str(output)}
    assert run.events[0].data["trainable_params"] == run.events[0].data["total_params"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = AutoModelForCausalLM.from_pretrained(output)
    base = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    assert AutoTokenizer.from_pretrained(output).chat_template
    weight = "model.layers.0.mlp.down_proj.weight"
    assert not tuned.state_dict()[weight].equal(base.state_dict()[weight])


@pytest.mark.slow
def test_sigterm_during_training_checkpoints_and_exits_143(runs) -> None:
    run = runs["cancelled"].wait()
    assert run.code == EXIT_CANCELLED, run.stderr
    assert "done" not in run.types() and "failed" not in run.types() and DONE_MARKER not in run.stdout
    checkpoint = run.events[-1]
    assert checkpoint.type == "artifact" and checkpoint.data["kind"] == "checkpoint"
    assert checkpoint.data["step"] == run.of_type("progress")[-1].data["step"] < 5000
    # Even with save_strategy "no": a cancelled run can be resumed from where it stopped.
    assert (Path(checkpoint.data["path"]) / "trainer_state.json").is_file()
    assert (Path(checkpoint.data["path"]) / "optimizer.pt").is_file()


@pytest.mark.slow
def test_the_oom_test_hook_fails_the_run_like_a_gpu_would(runs) -> None:
    run = runs["oom"].wait()
    assert run.code == 1
    assert [e.data["step"] for e in run.of_type("progress")] == [1, 2]
    failed = run.events[-1]
    assert failed.type == "failed" and failed.data["error_type"] == "OutOfMemoryError"
    assert failed.data["message"].startswith("CUDA out of memory")
    assert DONE_MARKER not in run.stdout and "OutOfMemoryError" in run.stderr


@pytest.mark.slow
def test_an_out_of_memory_error_mid_run_is_recovered_with_the_same_effective_batch(runs) -> None:
    """Issue 19: the injected CUDA OOM at step 3 is recovered from: the last completed step is kept as a checkpoint and
    the run resumes there with half the rows per micro-batch and twice the accumulation, and succeeds, saying so."""
    run = runs["oom_once"].wait()
    assert run.code == 0, run.stderr[-3000:]
    assert [e.data["step"] for e in run.of_type("progress")] == [1, 2, 3, 4]
    planned, recovered = run.of_type("started")
    before, after = planned.data["recipe"], recovered.data["recipe"]
    assert (before["rows_per_micro_batch"], before["gradient_accumulation_steps"]) == (8, 1)
    assert (after["rows_per_micro_batch"], after["gradient_accumulation_steps"]) == (4, 2)  # the same 8 rows per step
    assert recovered.data["resumed_from_step"] == 2
    assert [e.data["step"] for e in run.of_type("artifact") if e.data["kind"] == "checkpoint"] == [2]
    done = run.events[-1]
    assert done.type == "done" and done.data["notes"][0].startswith("recovered from out-of-memory at step 3")
    assert done.data["recovered_from_oom"] == [{"step": 3, "rows_per_micro_batch": 4, "gradient_accumulation_steps": 2}]
    assert "note: recovered from out-of-memory at step 3" in run.stderr and DONE_MARKER in run.stdout
    recipe = json.loads((Path(runs["oom_once"].spec.run_dir) / "recipe.json").read_text())
    assert recipe["gradient_accumulation_steps"] == 2 and any("out-of-memory" in note for note in recipe["notes"])


def test_qlora_on_cpu_is_refused_before_anything_loads(make_spec, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "qlora", training_mode="qlora", bitsandbytes={"load_in_4bit": True})
    began = time.monotonic()
    run = TrainerProcess(spec).wait()
    assert run.code == 1
    assert time.monotonic() - began < 5  # refused before the ~10 s of torch imports
    (failed,) = run.events
    assert failed.type == "failed" and failed.data["error_type"] == "ValueError"
    assert "QLoRA needs a CUDA GPU" in failed.data["message"] and "use training_mode 'lora'" in failed.data["message"]


def test_an_unreadable_spec_fails_on_stderr_with_status_1(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text('{"protocol_version": 999}')
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "sft", str(tmp_path / "spec.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "protocol version 999" in done.stderr
