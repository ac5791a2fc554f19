from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainer.protocol import DataSource, ModelSource, TrainSpec

# Every field of ftapp's TrainingSettings, sized for a seconds-long CPU run on the demo kit. The
# GPU-minded values (fused AdamW, padding-free, "auto") are kept on purpose: the trainer must
# translate them for the CPU, as it will for the specs ftapp writes.
TEST_TRAINING: dict[str, Any] = {
    "num_train_epochs": 1.0,
    "max_steps": 6,
    "learning_rate": 5e-3,
    "lr_scheduler_type": "constant",
    "warmup_ratio": 0.0,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "optim": "adamw_torch_fused",
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_tokens_per_batch": 0,
    "per_device_eval_batch_size": 16,
    "max_length": 128,
    "packing": False,
    "padding_free": True,
    "bf16": "auto",
    "fp16": False,
    "gradient_checkpointing": "auto",
    "use_liger_kernel": "auto",
    "torch_compile": False,
    "completion_only_loss": True,
    "assistant_only_loss": True,
    "neftune_noise_alpha": 0.0,
    "eval_strategy": "steps",
    "eval_steps": 3,
    "save_strategy": "steps",
    "save_steps": 3,
    "save_total_limit": 2,
    "logging_steps": 1,
    "seed": 0,
    "dataloader_num_workers": 0,
    "report_to": "mlflow",
    "disable_tqdm": True,
    "ddp_find_unused_parameters": False,
}
TEST_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "bias": "none",
    "task_type": "CAUSAL_LM",
    "target_modules": "all-linear",
    "use_rslora": False,
    "use_dora": False,
    "modules_to_save": None,
}

SpecFactory = Callable[..., TrainSpec]


@pytest.fixture(scope="session")
def messages_dataset(demo_kit, tmp_path_factory) -> Path:
    """The demo rows as OpenAI-style conversations with a system turn."""
    path = tmp_path_factory.mktemp("messages") / "messages.jsonl"
    rows = [json.loads(line) for line in demo_kit.dataset_path.read_text().splitlines()][:120]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "Name the intent of the request."},
                        {"role": "user", "content": row["request"]},
                        {"role": "assistant", "content": row["intent"]},
                    ]
                }
            )
            + "\n"
            for row in rows
        )
    )
    return path


@pytest.fixture(scope="session")
def make_spec(demo_kit) -> SpecFactory:
    """A LoRA spec on the demo kit's prompt-template data; keyword arguments override its fields."""

    def make(run_dir: Path, *, training: dict[str, Any] | None = None, data: dict[str, Any] | None = None, **fields: Any) -> TrainSpec:
        run_dir.mkdir(parents=True, exist_ok=True)
        source = {
            "kind": "project_jsonl",
            "path": str(demo_kit.dataset_path),
            "format": "plain",
            "prompt_template": demo_kit.prompt["prompt_template"],
            "input_template": demo_kit.prompt["input_template"],
            "completion_template": demo_kit.prompt["completion_template"],
            "train_split": 0.9,
            "seed": 0,
        }
        values: dict[str, Any] = {
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "method": "sft",
            "training_mode": "lora",
            "model": ModelSource(str(demo_kit.model_dir), architecture="LlamaForCausalLM"),
            "data": DataSource(**{**source, **(data or {})}),
            "adapter_name": f"test-{run_dir.name}",
            "training": {**TEST_TRAINING, **(training or {})},
            "lora": dict(TEST_LORA),
            "device": "cpu",
            # One thread each: several runs share two cores, and one thread is as fast for a model this size.
            "cpu_threads": 1,
        }
        return TrainSpec(**{**values, **fields})

    return make
