"""A real Axolotl run through the supervisor on the demo model: live loss, cancel with a checkpoint, resume, the adapter
registered with its lineage. Runs only where Axolotl is installed for the trainer (``FTAPP_AXOLOTL_PYTHON``, see the
README); skipped elsewhere, as on CI, whose Python cannot hold Axolotl next to ftapp's newer libraries."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.configs import AddConfigRequest
from ftapp.run_vocabulary import RunStatus
from ftapp.runs import FineTuneRequest
from trainer.protocol import axolotl_python

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(axolotl_python(os.environ) is None, reason="Axolotl is not installed for the trainer (FTAPP_AXOLOTL_PYTHON)"),
]
CONFIG = """\
# the demo model, small and quick on the CPU
datasets:
  - path: train.jsonl
    type: alpaca
val_set_size: 0.1
sequence_len: 128
adapter: lora
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
lora_target_linear: true
micro_batch_size: 4
gradient_accumulation_steps: 1
max_steps: 40
learning_rate: 0.002
optimizer: adamw_torch
lr_scheduler: constant
logging_steps: 1
save_steps: 2
eval_steps: 10
"""


def test_an_axolotl_run_trains_cancels_resumes_and_registers_its_adapter(services, demo_kit, tmp_path: Path):
    rows = [json.loads(line) for line in demo_kit.dataset_path.read_text().splitlines()][:80]
    data = tmp_path / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": r["request"], "input": "", "output": r["intent"]}) + "\n" for r in rows))
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    dataset = services.datasets.add(AddDatasetRequest(name="alpaca-intents", location=str(data)))
    config = services.configs.add(AddConfigRequest(type="axolotl", config=CONFIG, name="tiny-axolotl")).record
    request = FineTuneRequest(
        base_model_id=model.id,
        dataset_id=dataset.id,
        adapter_name="axo-intents",
        gpus="cpu",
        framework="axolotl",
        axolotl_config_id=config.id,
    )
    run, _ = services.runs.submit(request)

    deadline = time.monotonic() + 300
    while len(services.runs.metrics(run.id).get("loss", [])) < 3:  # live: loss points arrive while it trains
        assert time.monotonic() < deadline, services.runs.log_tail(run.id)
        assert services.runs.get(run.id).status in (RunStatus.QUEUED, RunStatus.RUNNING), services.runs.log_tail(run.id)
        services.supervisor.tick()
        time.sleep(0.2)
    services.runs.cancel(run.id)
    cancelled = services.runs.wait(run.id, timeout_s=120)
    assert cancelled.status == RunStatus.CANCELLED, services.runs.log_tail(run.id)
    assert list((Path(cancelled.run_dir) / "checkpoints").glob("checkpoint-*"))

    resumed = services.runs.wait(services.runs.resume(run.id).id, timeout_s=600)
    assert resumed.status == RunStatus.SUCCEEDED, services.runs.log_tail(resumed.id)
    events = [json.loads(line) for line in (Path(resumed.run_dir) / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["type"] == "started")
    assert started["resumed_from_step"] and started["total_steps"] == 40
    metrics = services.runs.metrics(resumed.id)
    assert metrics["loss"][-1][0] == 40 and "eval_loss" in metrics

    (adapter,) = services.adapters.list()
    assert (adapter.name, adapter.run_id, adapter.prompt_id) == ("axo-intents", resumed.id, run.prompt_id)
    assert services.prompts.get(run.prompt_id).prompt_template.startswith("<Instruction>: {instruction}\n")
    weights = load_file(str(Path(adapter.location) / "adapter_model.safetensors"))
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in weights.items())  # it learned
    written = (Path(resumed.run_dir) / "axolotl.yaml").read_text()
    assert f"base_model: {demo_kit.model_dir}" in written and f"path: {dataset.location}" in written  # the home's copy
