"""A training run taken past one machine: bundle → the bundle's own launch script → import.

The bundle is exported for one CPU process, so ``launch.sh --local`` runs the real trainer entry
point here; the multi-node command it would run under Slurm is checked with ``--dry-run`` and a
stand-in ``scontrol``. The import goes through the CLI, as a user would bring a bundle back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from ftapp.runs.fine_tune_request import FineTuneRequest
from trainer.protocol import read_events

FAST = {
    "max_steps": 4,
    "logging_steps": 1,
    "eval_steps": 2,
    "save_steps": 2,
    "per_device_train_batch_size": 4,
    "max_length": 64,
    "learning_rate": 3e-3,
}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def planned_run(services, registered):
    """A training run planned on this machine (queued; no supervisor starts it here)."""
    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model_id,
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
            adapter_name="cluster-lora",
            gpus="cpu",
            cpu_threads=1,
            overrides=FAST,
        )
    )
    return run


@pytest.mark.slow
def test_a_bundle_runs_its_launch_script_and_comes_back_as_a_registered_adapter(services, registered, planned_run, tmp_path: Path, capsys):
    home, bundle = str(services.settings.home), tmp_path / "bundle"
    code, out, err = cli(capsys, "--home", home, "runs", "bundle", planned_run.id, "--out", str(bundle), "--device", "cpu", "--json")
    assert code == 0, err
    written = json.loads(out)
    assert set(written["copied"]) == {"model", f"data/{Path(registered.dataset.location).name}"} and written["referenced"] == []
    spec = json.loads((bundle / "spec.json").read_text())
    assert (spec["run_dir"], spec["model"]["source"], spec["device"], spec["mlflow_tracking_uri"]) == ("run", "model", "cpu", None)
    assert (bundle / "trainer" / "__main__.py").is_file() and "torch==" in (bundle / "requirements.txt").read_text()
    services.runs.cancel(planned_run.id)  # it trains on the "cluster" instead

    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "PYTHONPATH")}
    result = subprocess.run(
        ["bash", str(bundle / "launch.sh"), "--local"],
        cwd=tmp_path,
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = read_events(bundle / "run" / "events.jsonl").events
    assert [e.type for e in events][0] == "started" and events[-1].type == "done"
    assert "FINETUNE_PROGRESS" in (bundle / "run" / "trainer.log").read_text()

    code, out, err = cli(capsys, "--home", home, "runs", "import-bundle", str(bundle), "--json")
    assert code == 0, err
    imported = json.loads(out)
    run, adapter = imported["run"], imported["adapter"]
    assert run["status"] == "succeeded" and run["parent_run_id"] == planned_run.id and run["gpus"] == "1×1 cpu"
    assert (adapter["name"], adapter["run_id"], adapter["model_id"], adapter["prompt_id"]) == (
        "cluster-lora",
        run["id"],
        registered.model_id,
        registered.prompt_id,
    )
    location = Path(adapter["location"])
    assert location.is_relative_to(services.settings.runs_dir / run["id"]) and (location / "adapter_config.json").is_file()
    assert [step for step, _ in services.runs.metrics(run["id"])["loss"]] == [1, 2, 3, 4]
    assert _lora_b_trained(location)  # LoRA's B matrices start at zero; training moved them

    code, out, _ = cli(capsys, "--home", home, "runs", "list")
    assert code == 0 and any(run["id"] in line and "succeeded" in line for line in out.splitlines())


def _lora_b_trained(adapter: Path) -> bool:
    from safetensors.torch import load_file

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    return any(name.endswith("lora_B.weight") and tensor.abs().sum().item() > 0 for name, tensor in weights.items())


def test_under_slurm_the_launch_script_starts_accelerate_across_the_nodes(services, planned_run, tmp_path: Path, capsys):
    bundle = tmp_path / "bundle"
    code, _, err = cli(
        capsys,
        "--home",
        str(services.settings.home),
        "runs",
        "bundle",
        planned_run.id,
        "--out",
        str(bundle),
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
    )
    assert code == 0, err
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "scontrol").write_text("#!/bin/sh\nprintf 'node-a\\nnode-b\\n'\n")
    (fake_bin / "scontrol").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "7",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "node-[a-b]",
    }
    result = subprocess.run(["bash", str(bundle / "launch.sh"), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    command = result.stdout.split()
    assert "accelerate.commands.launch" in command and command[-3:] == ["trainer", "sft", "spec.json"]
    options = dict(zip(command, command[1:]))
    assert (options["--num_machines"], options["--machine_rank"], options["--num_processes"]) == ("2", "1", "8")
    assert (options["--main_process_ip"], options["--config_file"]) == ("node-a", "accelerate_config.yaml")
    config = (bundle / "accelerate_config.yaml").read_text()
    assert "num_machines: 2" in config and "num_processes: 8" in config and "distributed_type: MULTI_GPU" in config
    assert "#SBATCH --nodes=2" in (bundle / "slurm.sbatch").read_text()
    assert json.loads((bundle / "spec.json").read_text())["device"] == "cuda"
