"""What an Axolotl config may hold, and the config a run trains with: its paths rewritten to the run's own."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from trainer.protocol import DataSource, axolotl_config_problems, axolotl_python, axolotl_run_config, axolotl_training_mode

BASE = {
    "base_model": "org/model",
    "datasets": [{"path": "mhenrichsen/alpaca_2k_test", "type": "alpaca"}],
    "adapter": "lora",
    "lora_r": 8,
    "output_dir": "./outputs/lora-out",
    # A template's empty keys ask for nothing: they are not refused.
    "wandb_project": None,
    "deepspeed": None,
    "trust_remote_code": False,
}


def problems_of(**changes) -> dict[str, str]:
    return dict(axolotl_config_problems({**copy.deepcopy(BASE), **changes}))


def test_a_plain_lora_config_has_no_problem():
    assert axolotl_config_problems(BASE) == []


@pytest.mark.parametrize(
    "changes, field, said",
    [
        ({"trust_remote_code": True}, "trust_remote_code", "runs Python code"),
        ({"plugins": ["axolotl.integrations.liger.LigerPlugin"]}, "plugins", "imports the Python modules"),
        ({"trl": {"reward_funcs": ["rewards.mine"]}}, "trl.reward_funcs", "imports the Python functions"),
        ({"use_kernels": True}, "use_kernels", "downloads compiled kernels"),
        ({"deepspeed": "deepspeed_configs/zero3.json"}, "deepspeed", "DeepSpeed"),
        ({"hub_model_id": "me/leak"}, "hub_model_id", "pushes to the Hugging Face Hub"),
        ({"push_dataset_to_hub": "me/data"}, "push_dataset_to_hub", "pushes to the Hugging Face Hub"),
        ({"wandb_project": "mine"}, "wandb_project", "outside tracker"),
        ({"use_mlflow": True}, "use_mlflow", "outside tracker"),
        ({"rl": "dpo"}, "rl", "supervised fine-tuning"),
        ({"lora_model_dir": "adapters/old"}, "lora_model_dir", "continues an adapter"),
        ({"resume_from_checkpoint": "checkpoint-10"}, "resume_from_checkpoint", "ftapp resumes"),
        ({"tokenizer_config": "other/tokenizer"}, "tokenizer_config", "registered model"),
        ({"attn_implementation": "kernels-community/flash-attn3"}, "attn_implementation", "Hub kernel"),
        ({"adapter": "llama-adapter"}, "adapter", "lora, qlora or empty"),
        ({"datasets": [{"path": "a", "type": "alpaca"}, {"path": "b", "type": "alpaca"}]}, "datasets", "one entry"),
        ({"datasets": [{"path": "a", "type": "os.system"}]}, "datasets[0].type", "import code from outside Axolotl"),
        ({"datasets": [{"path": "a", "type": "evil_package.strategy"}]}, "datasets[0].type", "one of Axolotl's dataset types"),
        ({"datasets": [{"path": "a", "type": "alpaca", "trust_remote_code": True}]}, "datasets[0].trust_remote_code", "runs Python"),
    ],
)
def test_keys_that_run_code_reach_out_or_leave_the_run_are_refused(changes, field, said):
    found = problems_of(**changes)
    assert field in found and said in found[field], found


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"output_dir": "/etc/cron.d"}, "output_dir"),
        ({"output_dir": "../../elsewhere"}, "output_dir"),
        ({"dataset_prepared_path": "~/.ssh"}, "dataset_prepared_path"),
        ({"base_model": "/home/other/model"}, "base_model"),
        ({"datasets": [{"path": "/etc/passwd", "type": "completion"}]}, "datasets[0].path"),
        ({"datasets": [{"path": "data", "data_files": ["../../secret.jsonl"], "type": "alpaca"}]}, "datasets[0].data_files"),
        ({"datasets": [{"path": "s3://bucket/data", "type": "alpaca"}]}, "datasets[0].path"),
        ({"logging_dir": "C:\\Users\\x"}, "logging_dir"),
        ({"dynamic_checkpoint": {"trigger_file_path": "/tmp/trigger"}}, "dynamic_checkpoint.trigger_file_path"),
    ],
)
def test_absolute_and_parent_paths_are_refused_before_any_rewriting(changes, field):
    found = problems_of(**changes)
    assert field in found and "only a relative path" in found[field], found


@pytest.mark.parametrize("kind", ["alpaca", "chat_template", "alpaca_w_system.load_open_orca", "alpaca:chatml", "input_output"])
def test_axolotl_dataset_types_and_custom_formats_are_accepted(kind):
    assert problems_of(datasets=[{"path": "x", "type": kind}]) == {}
    custom = {"field_instruction": "q", "field_output": "a", "format": "[INST] {instruction} [/INST]"}
    assert problems_of(datasets=[{"path": "x", "type": custom}]) == {}


def test_a_stored_config_may_hold_what_only_a_run_refuses_but_never_code_to_run():
    elsewhere = {**BASE, "hub_model_id": "me/x", "output_dir": "/srv/out", "datasets": [{"path": "/data/x.jsonl", "type": None}]}
    assert axolotl_config_problems(elsewhere, to_run=False) == []
    assert {field for field, _ in axolotl_config_problems(elsewhere)} == {
        "hub_model_id",
        "output_dir",
        "datasets[0].path",
        "datasets[0].type",
    }
    code = {**BASE, "plugins": ["x.Plugin"], "datasets": [{"path": "x", "type": "evil_package.strategy"}]}
    assert {field for field, _ in axolotl_config_problems(code, to_run=False)} == {"plugins", "datasets[0].type"}


def test_a_config_that_is_no_mapping_or_too_deep_is_refused():
    assert axolotl_config_problems(["base_model"]) == [("config", "an Axolotl config is a mapping of settings, got list")]
    deep: dict = {"x": 1}
    for _ in range(20):
        deep = {"nested": deep}
    assert any("deeper than" in why for _, why in axolotl_config_problems({**BASE, "fsdp_config": deep}))


@pytest.mark.parametrize(
    "values, mode",
    [
        ({"adapter": "lora"}, "lora"),
        ({"adapter": "qlora", "load_in_4bit": True}, "qlora"),
        ({"adapter": "lora", "load_in_8bit": True}, "qlora"),
        ({}, "full"),
    ],
)
def test_training_mode_follows_the_adapter(values, mode):
    assert axolotl_training_mode(values) == mode


def test_the_run_config_has_the_runs_model_data_and_folders(tmp_path: Path):
    data = DataSource(kind="project_jsonl", path=str(tmp_path / "rows.jsonl"))
    given = {**copy.deepcopy(BASE), "datasets": [{"path": "x", "type": "alpaca", "data_files": ["y.jsonl"], "split": "train[:50]"}]}
    before = copy.deepcopy(given)
    config, notes = axolotl_run_config(
        given, model="/models/tiny", data=data, run_dir=str(tmp_path / "run"), resume_from=None, device="cuda"
    )
    assert given == before  # the spec's config is left as it was
    assert config["base_model"] == "/models/tiny"
    assert config["datasets"] == [{"path": str(tmp_path / "rows.jsonl"), "type": "alpaca", "split": "train[:50]", "ds_type": "json"}]
    assert config["output_dir"] == str(tmp_path / "run" / "checkpoints")
    assert config["dataset_prepared_path"] == str(tmp_path / "run" / "axolotl_prepared")
    assert "resume_from_checkpoint" not in config and notes == []
    assert {k: config[k] for k in ("adapter", "lora_r")} == {"adapter": "lora", "lora_r": 8}  # the user's settings stay


def test_the_run_config_reads_hub_datasets_resumes_and_translates_for_the_cpu(tmp_path: Path):
    data = DataSource(kind="huggingface", hub_name="org/rows", hub_config="en", hub_split="validation")
    given = {**BASE, "bf16": "auto", "flash_attention": True, "datasets": [{"path": "x", "type": "alpaca", "ds_type": "csv"}]}
    config, notes = axolotl_run_config(given, model="m", data=data, run_dir="/r", resume_from="/r0/checkpoints/checkpoint-4", device="cpu")
    assert config["datasets"] == [{"path": "org/rows", "type": "alpaca", "split": "validation", "name": "en"}]
    assert config["resume_from_checkpoint"] == "/r0/checkpoints/checkpoint-4"
    assert config["bf16"] is False and config["flash_attention"] is False and config["lora_mlp_kernel"] is False
    assert notes == ["on the CPU: bf16, flash_attention off (they need CUDA)"]


def test_axolotl_is_looked_up_in_the_interpreter_the_variable_names(tmp_path: Path, stand_in_axolotl_python: Path):
    python = str(stand_in_axolotl_python)
    assert axolotl_python({"FTAPP_AXOLOTL_PYTHON": python}) == python
    assert axolotl_python({"FTAPP_AXOLOTL_PYTHON": sys.executable}) is None  # ftapp's own has no axolotl
    assert axolotl_python({"FTAPP_AXOLOTL_PYTHON": str(tmp_path / "missing")}) is None
    assert axolotl_python({}) is None
