"""The Train tab's handlers on real services: choices, presets, preflight, validation, start."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.presets import SEED_001
from ftapp.runs.machine import GpuInfo, Machine
from ftapp.services import Services
from ui import train, train_method
from ui.app import build_app
from ui.train_form import NO_PROMPT, device_choices, devices_and_processes


def test_choices_preselect_what_exists_and_keep_what_the_user_chose(services: Services, registered) -> None:
    model, dataset, preset, devices, prompt = train.refresh_choices(services, None, None, None, None, None)

    assert (model.value, dataset.value, devices.value) == (registered.model_id, registered.dataset_id, "auto")
    assert prompt.value == registered.prompt_id  # the chosen dataset's prompt
    assert [value for _, value in devices.choices][:2] == ["auto", "cpu"]
    assert {value for _, value in preset.choices} == {"seed 001 defaults", "modern default"}
    assert preset.value == "modern default"  # not the first in the list: the seed's slow defaults
    _, _, preset, devices, _ = train.refresh_choices(
        services, registered.model_id, registered.dataset_id, SEED_001, "cpu", registered.prompt_id
    )
    assert (preset.value, devices.value) == (SEED_001, "cpu")


def test_a_plain_dataset_needs_its_prompt_and_alpaca_data_may_go_without(services: Services, registered, alpaca: Path) -> None:
    plain = train.prompts_for_dataset(services, registered.dataset_id, None)

    assert plain.choices == [("intent-prompt", registered.prompt_id)] and plain.value == registered.prompt_id
    assert "required" in plain.label

    alpaca_id = services.datasets.add(AddDatasetRequest(location=str(alpaca))).id
    optional = train.prompts_for_dataset(services, alpaca_id, registered.prompt_id)
    assert [value for _, value in optional.choices] == [NO_PROMPT]  # the other dataset's prompt is not offered
    assert optional.value == NO_PROMPT and "optional for alpaca" in optional.label


def test_a_preset_fills_the_main_fields(services: Services) -> None:
    epochs, max_steps, lr, batch, accumulation, max_length, r, alpha, note = train.apply_preset(services, SEED_001)

    # -1 runs the epochs, as TrainingSettings, the command line and the spec say it (the form once said 0)
    assert (epochs, max_steps, lr, batch, accumulation, max_length, r, alpha) == (1, -1, 2e-4, 1, 4, 512, 16, 32)
    assert "QLoRA nf4" in note


def test_preflight_shows_memory_against_free_memory_and_time(services: Services, train_form) -> None:
    configs_before = len(services.configs.list())

    text = train.preflight(services, train_form(lora_r=8))

    assert text.startswith("### Preflight: ✅ fits on cpu")
    assert "GiB free" in text and "Training tokens" in text and "Time | **≈" in text
    # A preflight stores nothing: no run, and no LoRA config for the changed rank.
    assert services.runs.list() == [] and len(services.configs.list()) == configs_before


def test_an_invalid_request_names_every_broken_rule(services: Services, train_form) -> None:
    with pytest.raises(gr.Error) as caught:
        train.preflight(services, train_form(adapter_name="my adapter", model_id=None, learning_rate=-1.0))

    message = caught.value.message
    assert "FT-002" in message and "FT-013" in message and "FT-009" in message
    assert services.runs.list() == []


@pytest.mark.parametrize("extra, rule", [('{"max_steps": ', "CF-002"), ('{"learning_rat": 0.1}', "CF-005"), ("[1, 2]", "CF-005")])
def test_the_all_arguments_editor_is_checked(services: Services, train_form, extra: str, rule: str) -> None:
    with pytest.raises(gr.Error, match=rule):
        train.start_training(services, train_form(extra_arguments=extra))
    assert services.runs.list() == []


def test_start_queues_the_run_with_every_field_in_its_spec(services: Services, train_form) -> None:
    text = train.start_training(services, train_form(lora_r=8, extra_arguments='{"lr_scheduler_type": "constant"}'))

    [run] = services.runs.list()
    assert run.status == "queued" and f"`{run.id}`" in text and "Runs" in text
    spec = json.loads(run.spec)
    assert spec["adapter_name"] == "tiny-intents" and spec["training_mode"] == "lora"
    assert {
        k: spec["training"][k] for k in ("max_steps", "per_device_train_batch_size", "max_length", "learning_rate", "lr_scheduler_type")
    } == {"max_steps": 4, "per_device_train_batch_size": 4, "max_length": 64, "learning_rate": 3e-3, "lr_scheduler_type": "constant"}
    assert (spec["lora"]["r"], spec["lora"]["lora_alpha"]) == (8, 32)  # the changed rank reached the spec
    assert run.devices_requested == "cpu"


def test_max_steps_minus_one_trains_by_epochs_and_zero_is_refused(services: Services, train_form) -> None:
    # transformers trains no step at all for max_steps=0, while the preflight counted the epochs: one meaning, -1
    with pytest.raises(gr.Error, match="CF-005: max_steps 0 would train no step: give -1 to run the epochs"):
        train.start_training(services, train_form(max_steps=0))
    assert services.runs.list() == []

    train.start_training(services, train_form(max_steps=-1, num_epochs=2.0))

    [run] = services.runs.list()
    training = json.loads(run.spec)["training"]
    assert (training["max_steps"], training["num_train_epochs"]) == (-1, 2.0)


def test_every_gpu_is_offered_with_its_free_memory_and_all_of_them_together() -> None:
    machine = Machine(
        gpus=(GpuInfo(0, "NVIDIA H200", 143771, 1024), GpuInfo(1, "NVIDIA H200", 143771, 71885)), cpu_count=32, memory_available_mib=200_000
    )

    choices = dict((value, label) for label, value in device_choices(machine))

    assert list(choices) == ["auto", "cpu", "0", "1", "0,1"]
    assert choices["0"] == "GPU 0: NVIDIA H200, 139.4 of 140.4 GiB free"
    assert choices["1"].startswith("GPU 1: NVIDIA H200, 70.2 of")
    assert devices_and_processes("0,1") == ("0,1", 2) and devices_and_processes("1") == ("1", 1)
    assert devices_and_processes(None) == ("auto", 1)


# -- DPO and GRPO ---------------------------------------------------------------------------------------


def _adapter(services: Services, model_id: str, folder: Path, name: str):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    return services.adapters.add(AddAdapterRequest(name=name, model_id=model_id, location=str(folder)))


def _pairs(services: Services, tmp_path: Path) -> str:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Greet {i}", "chosen": f"Hello {i}!", "rejected": "No."}) + "\n" for i in range(10)))
    return services.datasets.add(AddDatasetRequest(name="pairs", location=str(path))).id


def test_each_method_shows_only_its_fields_and_the_layouts_it_needs() -> None:
    for method, shown in {"sft": (False, False, False), "dpo": (True, False, True), "grpo": (False, True, True)}.items():
        dataset, dpo, grpo, start = train_method.show_method(method)
        assert (dpo.visible, grpo.visible, start.visible) == shown
        assert dataset.info == train_method.DATA_NEEDS[method]
    assert "chosen and rejected" in train_method.DATA_NEEDS["dpo"] and "reference" in train_method.DATA_NEEDS["grpo"]


def test_the_custom_reward_row_is_offered_only_where_custom_code_may_run() -> None:
    local = [row[1] for row in train_method.reward_rows(allows_custom_code=True)]
    shared = [row[1] for row in train_method.reward_rows(allows_custom_code=False)]

    assert local[-1] == "custom_python" and "custom_python" not in shared
    assert shared == ["exact_match", "numeric_match", "regex_match", "valid_json", "length_penalty"]
    assert [row[0] for row in train_method.reward_rows(False)] == [True, False, False, False, False]  # exact match on


def test_the_start_from_list_holds_the_chosen_models_adapters(services: Services, registered, tmp_path: Path, demo_kit) -> None:
    mine = _adapter(services, registered.model_id, tmp_path / "mine", "mine")
    copy = shutil.copytree(demo_kit.model_dir, tmp_path / "other-model")
    other = services.models.add(AddModelRequest(type="project", name="other", location=str(copy)))
    _adapter(services, other.id, tmp_path / "theirs", "theirs")

    dropdown = train_method.starting_adapters(services, registered.model_id, None)

    assert [value for _, value in dropdown.choices] == [train_method.NO_ADAPTER, mine.id]
    assert dropdown.value == train_method.NO_ADAPTER
    assert train_method.starting_adapters(services, registered.model_id, mine.id).value == mine.id


def test_a_dpo_run_queued_from_the_tab_carries_its_settings_and_start(services: Services, registered, train_form, tmp_path: Path) -> None:
    start = _adapter(services, registered.model_id, tmp_path / "sft", "sft-start")
    pairs = _pairs(services, tmp_path)
    prompt = train.prompts_for_dataset(services, pairs, None)
    assert prompt.value == NO_PROMPT and "preference" in prompt.label

    train.start_training(
        services,
        train_form(
            method="dpo",
            dataset_id=pairs,
            prompt_id=prompt.value,
            dpo_beta=0.3,
            dpo_loss_type="ipo",
            init_adapter_id=start.id,
            rewards=train_method.reward_rows(True),
        ),
    )

    [run] = services.runs.list()
    spec = json.loads(run.spec)
    assert (spec["method"], spec["method_settings"], spec["init_adapter"]) == ("dpo", {"beta": 0.3, "loss_type": "ipo"}, start.location)
    assert spec["rewards"] == [] and run.adapter_id == start.id  # the rewards table belongs to GRPO


def test_a_grpo_run_takes_the_rewards_switched_on(services: Services, registered, train_form) -> None:
    table = train_method.reward_rows(True)
    table[2][0], table[2][2], table[2][3] = True, 0.5, r"^\w+$"  # regex_match
    table[4][0], table[4][2], table[4][3] = True, 0.1, "40"  # length_penalty

    text = train.preflight(services, train_form(method="grpo", rewards=table, num_generations=2.0, max_completion_length=16.0))
    assert "generation KV cache" in text
    train.start_training(
        services,
        train_form(method="grpo", rewards=table, num_generations=2.0, max_completion_length=16.0, init_adapter_id=train_method.NO_ADAPTER),
    )

    spec = json.loads(services.runs.list()[0].spec)
    assert spec["method_settings"] == {"num_generations": 2, "max_completion_length": 16, "temperature": 1.0, "beta": 0.0}
    assert [(r["kind"], r["weight"], r["pattern"], r["target_length"]) for r in spec["rewards"]] == [
        ("exact_match", 1.0, None, None),
        ("regex_match", 0.5, r"^\w+$", None),
        ("length_penalty", 0.1, None, 40),
    ]
    assert spec["init_adapter"] is None


@pytest.mark.parametrize("change, rule", [((2, 3, "(oops"), "FT-018"), ((4, 3, "many"), "FT-018"), ((0, 2, "x"), "FT-018")])
def test_bad_rewards_in_the_table_are_refused(services: Services, train_form, change, rule: str) -> None:
    table = train_method.reward_rows(True)
    row, column, value = change
    table[row][0], table[row][column] = True, value

    with pytest.raises(gr.Error, match=rule):
        train.start_training(services, train_form(method="grpo", rewards=table))
    assert services.runs.list() == []


def test_sft_ignores_the_fields_of_other_methods(services: Services, registered, train_form, tmp_path: Path) -> None:
    start = _adapter(services, registered.model_id, tmp_path / "left", "left-over")

    train.start_training(services, train_form(dpo_beta=0.5, init_adapter_id=start.id, rewards=train_method.reward_rows(True)))

    spec = json.loads(services.runs.list()[0].spec)
    assert (spec["method"], spec["method_settings"], spec["rewards"], spec["init_adapter"]) == ("sft", {}, [], None)


# -- issue 16: papercuts of the form ------------------------------------------------------------------------------


def _refused(action) -> str:
    """The toast's text of a refused action (``gr.Error`` shows HTML, so quotes come escaped)."""
    with pytest.raises(gr.Error) as caught:
        action()
    return html.unescape(caught.value.message)


def _train_widgets(services: Services) -> dict[str, gr.components.Component]:
    return {b.elem_id: b for b in build_app(services).blocks.values() if str(getattr(b, "elem_id", "")).startswith("train-")}


def test_a_cleared_dataset_stays_cleared_and_start_refuses_to_train(services: Services, registered, train_form) -> None:
    # The browser's dropdown puts the last choice back when its text is deleted, unless it takes custom values.
    widgets = _train_widgets(services)
    assert all(widgets[f"train-{name}"].allow_custom_value for name in ("model", "dataset", "prompt"))

    _, dataset, _, _, prompt = train.refresh_choices(services, registered.model_id, "", None, "cpu", "")

    assert dataset.value is None and prompt.value is None  # not the first dataset again
    message = _refused(lambda: train.start_training(services, train_form(dataset_id="", prompt_id="")))
    assert message == "FT-014: choose a dataset to train on"
    assert _refused(lambda: train.preflight(services, train_form(model_id=None))) == "FT-013: choose a base model to train"
    assert services.runs.list() == []


def test_an_empty_adapter_name_asks_for_one_and_the_field_says_how(services: Services, train_form) -> None:
    message = _refused(lambda: train.start_training(services, train_form(adapter_name="  ")))

    assert message.startswith("FT-002: name the adapter: letters, digits and - (at most 64), e.g. support-intents-v1")
    assert "must match" not in message and services.runs.list() == []
    info = _train_widgets(services)["train-adapter-name"].info
    assert "letters, digits and -" in info and "support-intents-v1" in info  # help text that stays, not a placeholder


# Each numeric field with a value out of its range, and the rule and field name the refusal must carry.
OUT_OF_RANGE = [
    ({"num_epochs": -1.0}, "FT-008: num_epochs must be"),
    ({"max_steps": -5}, "CF-005: max_steps must be"),
    ({"learning_rate": -1.0}, "FT-009: learning_rate must be"),
    ({"batch_size": 0}, "CF-005: per_device_train_batch_size must be"),
    ({"grad_accumulation": -2}, "CF-005: gradient_accumulation_steps must be"),
    ({"max_length": 4}, "CF-005: max_length must be"),
    ({"lora_r": -8}, "CF-005: r must be"),
    ({"lora_alpha": -16.0}, "CF-005: lora_alpha must be"),
    ({"dataset_fraction": 5.0}, "FT-010: dataset_fraction must be"),
    ({"train_split": -0.5}, "FT-011: train_test_split must be"),
    ({"method": "dpo", "dpo_beta": -0.1}, "FT-019: method_settings: beta must be"),
    ({"method": "grpo", "num_generations": 1}, "FT-019: method_settings: num_generations must be"),
    ({"method": "grpo", "max_completion_length": -1}, "FT-019: method_settings: max_completion_length must be"),
    ({"method": "grpo", "temperature": -1.0}, "FT-019: method_settings: temperature must be"),
    ({"method": "grpo", "grpo_beta": -1.0}, "FT-019: method_settings: beta must be"),
]


def test_every_number_of_the_form_is_judged_by_ftapp_with_its_field_and_rule(services: Services, train_form) -> None:
    # gradio's own range check would answer first, with "Value -1 is less than minimum value 0." and nothing more.
    numbers = [w for w in _train_widgets(services).values() if isinstance(w, (gr.Number, gr.Slider))]
    assert len(numbers) >= 15
    for widget in numbers:
        assert widget.preprocess(-1) == -1 and widget.preprocess(10**6) == 10**6, widget.elem_id

    for changes, expected in OUT_OF_RANGE:
        form = train_form(**changes)
        assert expected in _refused(lambda: train.preflight(services, form)), changes  # noqa: B023 - called at once
    assert services.runs.list() == []
