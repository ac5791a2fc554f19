"""The Train tab's handlers on real services: choices, presets, preflight, validation, start."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.machine import GpuInfo, Machine
from ftapp.presets import SEED_001
from ftapp.services import Services
from ui import train
from ui.train_form import NO_PROMPT, device_choices, devices_and_processes


def test_choices_preselect_what_exists_and_keep_what_the_user_chose(services: Services, registered) -> None:
    model, dataset, preset, devices, prompt = train.refresh_choices(services, None, None, None, None, None)

    assert (model.value, dataset.value, devices.value) == (registered.model_id, registered.dataset_id, "auto")
    assert prompt.value == registered.prompt_id  # the chosen dataset's prompt
    assert [value for _, value in devices.choices][:2] == ["auto", "cpu"]
    assert {value for _, value in preset.choices} == {"seed 001 defaults", "modern default"}
    _, _, preset, devices, _ = train.refresh_choices(services, registered.model_id, registered.dataset_id, SEED_001,
                                                     "cpu", registered.prompt_id)
    assert (preset.value, devices.value) == (SEED_001, "cpu")


def test_a_plain_dataset_needs_its_prompt_and_alpaca_data_may_go_without(services: Services, registered,
                                                                         alpaca: Path) -> None:
    plain = train.prompts_for_dataset(services, registered.dataset_id, None)

    assert plain.choices == [("intent-prompt", registered.prompt_id)] and plain.value == registered.prompt_id
    assert "required" in plain.label

    alpaca_id = services.datasets.add(AddDatasetRequest(location=str(alpaca))).id
    optional = train.prompts_for_dataset(services, alpaca_id, registered.prompt_id)
    assert [value for _, value in optional.choices] == [NO_PROMPT]  # the other dataset's prompt is not offered
    assert optional.value == NO_PROMPT and "optional for alpaca" in optional.label


def test_a_preset_fills_the_main_fields(services: Services) -> None:
    epochs, max_steps, lr, batch, accumulation, max_length, r, alpha, note = train.apply_preset(services, SEED_001)

    assert (epochs, max_steps, lr, batch, accumulation, max_length, r, alpha) == (1, 0, 2e-4, 1, 4, 512, 16, 32)
    assert "QLoRA nf4" in note


def test_preflight_shows_memory_against_free_memory_and_time(services: Services, train_values) -> None:
    configs_before = len(services.configs.list())

    text = train.preflight(services, *train_values(lora_r=8))

    assert text.startswith("### Preflight: ✅ fits on cpu")
    assert "GiB free" in text and "Training tokens" in text and "Time | **≈" in text
    # A preflight stores nothing: no run, and no LoRA config for the changed rank.
    assert services.runs.list() == [] and len(services.configs.list()) == configs_before


def test_an_invalid_request_names_every_broken_rule(services: Services, train_values) -> None:
    with pytest.raises(gr.Error) as caught:
        train.preflight(services, *train_values(adapter_name="my adapter", model_id=None, learning_rate=-1.0))

    message = caught.value.message
    assert "FT-002" in message and "FT-013" in message and "FT-009" in message
    assert services.runs.list() == []


@pytest.mark.parametrize("extra, rule", [('{"max_steps": ', "CF-002"), ('{"learning_rat": 0.1}', "CF-005"),
                                         ("[1, 2]", "CF-005")])
def test_the_all_arguments_editor_is_checked(services: Services, train_values, extra: str, rule: str) -> None:
    with pytest.raises(gr.Error, match=rule):
        train.start(services, *train_values(extra_arguments=extra))
    assert services.runs.list() == []


def test_start_queues_the_run_with_every_field_in_its_spec(services: Services, train_values) -> None:
    text = train.start(services, *train_values(lora_r=8, extra_arguments='{"lr_scheduler_type": "constant"}'))

    [run] = services.runs.list()
    assert run.status == "queued" and f"`{run.id}`" in text and "Runs" in text
    spec = json.loads(run.spec)
    assert spec["adapter_name"] == "tiny-intents" and spec["training_mode"] == "lora"
    assert {k: spec["training"][k] for k in ("max_steps", "per_device_train_batch_size", "max_length",
                                            "learning_rate", "lr_scheduler_type")} == {
        "max_steps": 4, "per_device_train_batch_size": 4, "max_length": 64, "learning_rate": 3e-3,
        "lr_scheduler_type": "constant"}
    assert (spec["lora"]["r"], spec["lora"]["lora_alpha"]) == (8, 32)  # the changed rank reached the spec
    assert run.devices_requested == "cpu"


def test_zero_max_steps_trains_by_epochs(services: Services, train_values) -> None:
    train.start(services, *train_values(max_steps=0, num_epochs=2.0))

    [run] = services.runs.list()
    training = json.loads(run.spec)["training"]
    assert (training["max_steps"], training["num_train_epochs"]) == (-1, 2.0)


def test_every_gpu_is_offered_with_its_free_memory_and_all_of_them_together() -> None:
    machine = Machine(gpus=(GpuInfo(0, "NVIDIA H200", 143771, 1024), GpuInfo(1, "NVIDIA H200", 143771, 71885)),
                      cpu_count=32, memory_available_mib=200_000)

    choices = dict((value, label) for label, value in device_choices(machine))

    assert list(choices) == ["auto", "cpu", "0", "1", "0,1"]
    assert choices["0"] == "GPU 0: NVIDIA H200, 139.4 of 140.4 GiB free"
    assert choices["1"].startswith("GPU 1: NVIDIA H200, 70.2 of")
    assert devices_and_processes("0,1") == ("0,1", 2) and devices_and_processes("1") == ("1", 1)
    assert devices_and_processes(None) == ("auto", 1)
