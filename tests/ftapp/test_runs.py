"""Training runs through the real supervisor and a real `python -m trainer sft` child on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.services import open_services
from ftapp.settings import Settings
from storage.types import utc_now
from trainer.protocol import read_events

FAST = {
    "max_steps": 6,
    "logging_steps": 1,
    "eval_steps": 3,
    "save_steps": 3,
    "per_device_train_batch_size": 4,
    "max_length": 64,
    "learning_rate": 3e-3,
}
LONG = {**FAST, "max_steps": 400, "eval_steps": 200, "save_steps": 2}


def request(registered, name: str, **overrides) -> FineTuneRequest:
    return FineTuneRequest(
        base_model_id=registered.model.id,
        dataset_id=registered.dataset.id,
        prompt_id=registered.prompt.id,
        adapter_name=name,
        gpus="cpu",
        overrides={**FAST, **overrides},
    )


def wait_for(predicate, services, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.supervisor.tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_a_run_trains_streams_metrics_and_registers_its_adapter(services, registered):
    run, preflight = services.runs.submit(request(registered, "tiny-intents"))
    assert run.status == "queued" and preflight.fits
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text
    assert final.exit_code == 0 and final.step == 6 and final.malformed_events == 0

    metrics = services.runs.metrics(run.id)
    assert [step for step, _ in metrics["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in metrics["eval_loss"]][:1] == [3]
    events = read_events(Path(final.run_dir) / "events.jsonl").events
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and kinds.index("artifact") < kinds.index("done")
    # The spec is immutable after submit: the placement travels in CUDA_VISIBLE_DEVICES, not by rewriting spec.json.
    on_disk = json.loads((Path(final.run_dir) / "spec.json").read_text())
    assert on_disk == json.loads(final.spec) and on_disk["device"] == "auto"

    adapter = next(a for a in services.adapters.list() if a.name == "tiny-intents")
    assert (adapter.run_id, adapter.model_id, adapter.prompt_id) == (run.id, registered.model.id, registered.prompt.id)
    assert (Path(adapter.location) / "adapter_config.json").is_file()
    log = Path(final.log_path).read_text()
    # seed 000's contract: progress lines on stdout, JOB_DONE once, after the last of them
    assert log.count("JOB_DONE") == 1 and log.rindex("FINETUNE_PROGRESS") < log.index("JOB_DONE")
    assert "gemm_4bit_forward" not in log and "Warning" not in log  # a healthy CPU LoRA run: no library noise (issue 16)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=services.settings.mlflow_tracking_uri)
    history = client.get_metric_history(final.mlflow_run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_the_app_side_can_go_away_while_a_run_trains(tmp_path, registered, services):
    run, _ = services.runs.submit(request(registered, "survivor", max_steps=30, save_steps=100, eval_steps=100))
    wait_for(lambda: services.runs.get(run.id).step, services, 120)
    home = services.settings.home
    services.close()  # the UI process goes away; the trainer keeps going in its own session

    again = open_services(Settings.from_env(home))
    try:
        final = again.runs.wait(run.id, timeout_s=300)
        assert final.status == "succeeded", final.error_text
        progress = [e for e in read_events(Path(final.run_dir) / "events.jsonl").events if e.type == "progress"]
        assert [s for s, _ in again.runs.metrics(run.id)["loss"]] == [e.data["step"] for e in progress]
        assert any(a.run_id == run.id for a in again.adapters.list())
    finally:
        again.close()


@pytest.mark.slow
def test_a_killed_trainer_fails_with_its_log_tail_within_5_s(services, registered):
    run, _ = services.runs.submit(request(registered, "doomed", **LONG))
    running = wait_for(lambda: (r := services.runs.get(run.id)).step and r, services, 120)
    os.kill(running.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    final = wait_for(lambda: (r := services.runs.get(run.id)).status != "running" and r, services, 5)
    assert time.monotonic() - killed_at < 5
    assert (final.status, final.error_cause, final.exit_code) == ("failed", "killed", -9)
    assert "FINETUNE_PROGRESS" in final.error_text


@pytest.mark.slow
def test_cancel_stops_the_whole_process_group_within_10_s(services, registered):
    run, _ = services.runs.submit(request(registered, "stopped", **LONG))
    running = wait_for(lambda: (r := services.runs.get(run.id)).step and r, services, 120)
    services.runs.cancel(run.id)
    asked = time.monotonic()
    final = wait_for(lambda: (r := services.runs.get(run.id)).status != "running" and r, services, 10)
    assert time.monotonic() - asked < 10 and final.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.killpg(running.pid, 0)


def test_a_queued_run_cancels_at_once(services, registered):
    run, _ = services.runs.submit(request(registered, "never"))
    assert services.runs.cancel(run.id).status == "cancelled"
    services.supervisor.tick()
    assert services.runs.get(run.id).pid is None


@pytest.mark.slow
def test_out_of_memory_is_named_with_a_smaller_batch_suggested(services, registered, monkeypatch):
    monkeypatch.setenv("FTAPP_TRAINER_FAULT", "cuda_oom_at_step=2")
    run, _ = services.runs.submit(request(registered, "oom", **LONG))
    final = services.runs.wait(run.id, timeout_s=300)
    assert (final.status, final.error_cause) == ("failed", "out of GPU memory")
    assert "per_device_train_batch_size" in final.error_text


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(services, registered, monkeypatch):
    monkeypatch.setenv("FTAPP_TRAINER_FAULT", "cuda_oom_at_step=5")
    first, _ = services.runs.submit(request(registered, "resumable", max_steps=8, save_steps=2, eval_steps=100))
    assert services.runs.wait(first.id, timeout_s=300).status == "failed"
    monkeypatch.delenv("FTAPP_TRAINER_FAULT")
    second = services.runs.resume(first.id)
    final = services.runs.wait(second.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text
    started = next(e for e in read_events(Path(final.run_dir) / "events.jsonl").events if e.type == "started")
    assert started.data["resumed_from_step"] == 4
    assert [s for s, _ in services.runs.metrics(second.id)["loss"]][0] == 5
    assert any(a.run_id == second.id and a.name == "resumable" for a in services.adapters.list())


def test_job_done_without_its_artifact_fails_closed_and_bad_lines_are_counted(services, registered, tmp_path):
    run_dir = tmp_path / "fake-run"
    run_dir.mkdir()
    lines = [
        {"type": "started", "time": 1.0, "total_steps": 1},
        {"type": "progress", "time": 2.0, "step": 1, "loss": 1.0},
        {"type": "artifact", "time": 3.0, "kind": "adapter", "path": str(run_dir / "output")},
        {"type": "done", "time": 4.0},
    ]
    text = "\n".join(json.dumps(line) for line in lines[:2]) + '\nnot json\n{"type": 5}\n'
    text += "\n".join(json.dumps(line) for line in lines[2:]) + "\n"
    (run_dir / "events.jsonl").write_text(text)
    (run_dir / "trainer.log").write_text("JOB_DONE\n")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    with services.db.transaction() as tx:
        tx.runs.add(
            id="fake",
            kind="finetune",
            status="running",
            run_dir=str(run_dir),
            log_path=str(run_dir / "trainer.log"),
            pid=exited.pid,
            process_start_time=1.0,
            started_at=utc_now(),
            base_model_id=registered.model.id,
        )
    services.supervisor.tick()
    final = services.runs.get("fake")
    assert (final.status, final.error_cause, final.malformed_events) == ("failed", "artifact missing", 2)
    assert services.runs.metrics("fake")["loss"] == [(1, 1.0)]


@pytest.mark.slow
def test_the_cli_trains_with_wait_and_shows_the_run(tmp_path, registered, services):
    home = str(services.settings.home)
    services.close()
    exe = str(Path(sys.executable).parent / "ftapp")
    sets = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
    trained = subprocess.run(
        [
            exe,
            "--home",
            home,
            "train",
            "--model",
            registered.model.id,
            "--dataset",
            registered.dataset.id,
            "--prompt",
            registered.prompt.id,
            "--name",
            "cli-lora",
            "--gpus",
            "cpu",
            *sets,
            "--wait",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "preflight: peak memory" in trained.stderr and ", loss " in trained.stdout
    assert trained.stdout.rstrip().endswith("succeeded")
    listed = json.loads(subprocess.run([exe, "--home", home, "runs", "list", "--json"], capture_output=True, text=True, timeout=120).stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("cli-lora", "succeeded")]
    shown = json.loads(
        subprocess.run([exe, "--home", home, "runs", "show", listed[0]["id"], "--json"], capture_output=True, text=True, timeout=120).stdout
    )
    assert len(shown["metrics"]["loss"]) == 6
    logs = subprocess.run([exe, "--home", home, "runs", "logs", listed[0]["id"]], capture_output=True, text=True, timeout=120)
    assert "JOB_DONE" in logs.stdout
    refused = subprocess.run(
        [
            exe,
            "--home",
            home,
            "train",
            "--model",
            registered.model.id,
            "--dataset",
            registered.dataset.id,
            "--name",
            "bad name",
            "--gpus",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "FT-002" in refused.stderr and "FT-005" in refused.stderr
