"""The supervised training path on a CUDA GPU (skipped without one): LoRA and QLoRA on the demo model."""

from __future__ import annotations

import shutil

import pytest

from ftapp.prompts.presets import MODERN
from ftapp.runs.fine_tune_request import FineTuneRequest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _cuda_available() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_a_gpu_run_trains_and_registers(services, registered, mode):
    modern = next(p for p in services.configs.presets() if p.name == MODERN)
    bnb = modern.configs["bitsandbytes_config"].id if mode == "qlora" else None
    run, preflight = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model.id,
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            adapter_name=f"gpu-{mode}",
            training_mode=mode,
            gpus="0",
            bitsandbytes_config_id=bnb,
            overrides={"max_steps": 20, "logging_steps": 2, "eval_steps": 10, "save_steps": 10, "learning_rate": 3e-3},
        )
    )
    assert preflight.device == "0"
    final = services.runs.wait(run.id, timeout_s=600)
    assert final.status == "succeeded", final.error_text
    assert final.gpus == "0"
    loss = services.runs.metrics(run.id)["loss"]
    assert loss[-1][1] < loss[0][1]
    assert any(a.run_id == run.id for a in services.adapters.list())
