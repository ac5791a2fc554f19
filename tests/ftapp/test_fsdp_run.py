"""FSDP2 for real (issue 20): two trainer processes over gloo on the CPU, launched by the supervisor through the same
``accelerate launch`` path and accelerate config as two GPUs get. One rank is killed mid-run (the run fails with that
as its cause, its sharded checkpoint kept), the run is resumed from that checkpoint, and the adapter it saves is the
one-GPU PEFT format, trained and loadable. ``bench/fsdp_gpu.py --smoke`` runs too: the bench a 2-GPU machine runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.ids import new_id
from ftapp.run_vocabulary import RunKind
from ftapp.runs.enqueue import enqueue
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.specs import build_train_spec
from trainer.protocol import PROGRESS, read_events

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING = {
    "max_steps": 4,
    "max_length": 128,
    "logging_steps": 1,
    "eval_strategy": "no",
    "save_strategy": "steps",
    "save_steps": 2,
    "learning_rate": 5e-3,
}


@pytest.mark.slow
def test_two_ranks_shard_a_run_that_survives_losing_one(services, registered, demo_kit, monkeypatch) -> None:
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="sharded",
        gpus="cpu",
        cpu_threads=1,
        overrides=TRAINING,
    )
    # Two CPU processes are no request a user can make (FT-007, FT-020): the spec is the one the preflight writes for
    # two GPUs, and the supervisor launches it as it launches every run.
    with services.db.transaction() as tx:
        spec = replace(build_train_spec(tx, services.settings, request, new_id(), device="cpu", strategy="fsdp2"), num_processes=2)
    monkeypatch.setenv("FTAPP_TRAINER_FAULT", "sigkill_rank_at_step=1:3")  # rank 1 dies as the OOM killer would do it
    run = enqueue(
        services.db,
        services.supervisor,
        spec,
        kind=RunKind.FINETUNE,
        name="sharded",
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        devices_requested="cpu",
    )
    failed = services.runs.wait(run.id, timeout_s=300)
    assert (failed.status, failed.error_cause) == ("failed", "rank 1 killed"), failed.error_text
    assert "rank 1 was stopped by SIGKILL" in (failed.error_text or "")
    log = Path(failed.run_dir, "trainer.log").read_text()
    assert "[default0]:setup: model took" in log and "[default1]:setup: model took" in log  # every rank's lines, named
    checkpoint = Path(failed.run_dir, "checkpoints", "checkpoint-2")
    assert sorted(p.name for p in checkpoint.glob("pytorch_model_fsdp_0/*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert json.loads(Path(failed.run_dir, "accelerate_fsdp2.json").read_text())["fsdp_config"]["fsdp_version"] == 2

    monkeypatch.delenv("FTAPP_TRAINER_FAULT")
    resumed = services.runs.wait(services.runs.resume(run.id).id, timeout_s=300)
    assert resumed.status == "succeeded", resumed.error_text
    steps = [e.data["step"] for e in read_events(Path(resumed.run_dir, "events.jsonl")).events if e.type == PROGRESS]
    assert steps == [3, 4]  # from the sharded checkpoint of step 2, optimizer and all

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    (adapter,) = [a for a in services.adapters.list() if a.name == "sharded"]
    output = Path(adapter.location)
    assert sorted(p.name for p in output.glob("adapter_*")) == ["adapter_config.json", "adapter_model.safetensors"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), output)
    trained = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert len(trained) == 14 and all(p.abs().sum() > 0 for p in trained.values())  # LoRA B starts at zero


@pytest.mark.slow
def test_the_bench_smoke_trains_two_cpu_ranks_with_fsdp2(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "bench/fsdp_gpu.py", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "FTAPP_MLFLOW": "0", "HF_HUB_OFFLINE": "1"},
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((tmp_path / "fsdp_gpu.json").read_text())
    (smoke,) = results["smoke"]
    assert smoke["status"] == "succeeded" and smoke["sharded_checkpoints"] and smoke["adapter_loads_and_trained"], smoke
    decisions = {(d["shape"], d["free_gib"], d["asked"]): d for d in results["decisions"]}
    assert decisions[("llama-8b", 139.0, "auto")]["strategy"] == "ddp"
    assert decisions[("llama-70b (80 layers)", 139.0, "auto")]["strategy"] == "fsdp2"
    assert not decisions[("llama-70b (80 layers)", 40.0, "auto")]["fits"]
