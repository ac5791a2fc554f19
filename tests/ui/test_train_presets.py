"""Saved training presets from the Train tab: save the form, load it back into the form, delete it; bad names,
bad settings and hostile stored rows are refused with their rule and write nothing."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import asdict

import gradio as gr
import pytest

from ftapp.prompts.presets import SEED_001
from ftapp.runs import FineTuneRequest
from ftapp.services import Services
from ftapp.visitors import demo_services, services_for_key
from ui import train_method
from ui.train_form import TrainForm, find_preset, fine_tune_request
from ui.train_presets import LOADED_FIELDS, PresetSaving, delete_preset, load_preset, save_preset, saved_presets

SKIP = type(gr.skip())


def refused(action: Callable[[], object]) -> str:
    """The toast's text (``gr.Error`` shows it as HTML, quotes escaped) of an action that is refused."""
    with pytest.raises(gr.Error) as caught:
        action()
    return html.unescape(caught.value.message)


def saving(form: TrainForm, name: str) -> PresetSaving:
    return PresetSaving(**asdict(form), preset_name=name)


def loaded_form(services: Services, name: str, adapter_name: str) -> TrainForm:
    """The form as the page shows it after Load, with a new adapter name typed in."""
    values = load_preset(services, name)
    assert "Loaded" in values.pop("status") and values.pop("preset_note").startswith("*") and set(values) == set(LOADED_FIELDS)
    loaded = {name: value for name, value in values.items() if not isinstance(value, SKIP)}
    return TrainForm(**loaded, adapter_name=adapter_name)  # another method's fields are left as they were: None here


def request_of(services: Services, form: TrainForm) -> FineTuneRequest:
    return fine_tune_request(form, find_preset(services.configs.presets(), form.preset))


def test_a_saved_form_loads_back_into_the_form_that_builds_the_same_request(services: Services, train_form) -> None:
    form = train_form(
        preset=SEED_001,
        max_steps=-1,
        num_epochs=2.0,
        lora_r=8,
        extra_arguments='{"lr_scheduler_type": "constant", "eval_steps": 2}',
        dataset_fraction=0.5,
    )

    picker, status = save_preset(services, saving(form, "  seed-recipe  "))

    assert picker.choices == [("seed-recipe", "seed-recipe")] and picker.value == "seed-recipe" and "seed-recipe" in status
    again = loaded_form(services, "seed-recipe", adapter_name="second-run")
    assert again.preset == SEED_001 and again.adapter_name == "second-run"
    assert request_of(services, again) == request_of(services, replace_name(form, "second-run"))
    assert json.loads(again.extra_arguments) == {"lr_scheduler_type": "constant", "eval_steps": 2}
    assert (again.max_steps, again.lora_r, again.num_epochs) == (-1, 8, 2.0)


def replace_name(form: TrainForm, name: str) -> TrainForm:
    return TrainForm(**{**asdict(form), "adapter_name": name})


def test_a_grpo_preset_brings_back_its_rewards_table(services: Services, train_form) -> None:
    table = train_method.reward_rows(True)
    table[2][0], table[2][2], table[2][3] = True, 0.5, r"^\w+$"
    form = train_form(method="grpo", rewards=table, num_generations=2.0, max_completion_length=16.0, temperature=0.7)
    save_preset(services, saving(form, "grpo recipe"))

    again = loaded_form(services, "grpo recipe", adapter_name=form.adapter_name)

    assert [row[:4] for row in again.rewards if row[0]] == [[True, "exact_match", 1.0, ""], [True, "regex_match", 0.5, r"^\w+$"]]
    assert (again.num_generations, again.max_completion_length, again.temperature, again.grpo_beta) == (2, 16, 0.7, None)
    assert request_of(services, again) == request_of(services, form)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "TP-001: name is required"),
        ("two\nlines", "TP-001: name may not hold control characters"),
        ("modern default", "TP-001: 'modern default' is the name of a shipped config preset"),
        ("taken", "TP-001: a preset named 'taken' already exists"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_is_saved(services: Services, train_form, name: str, message: str) -> None:
    save_preset(services, saving(train_form(), "taken"))

    assert message in refused(lambda: save_preset(services, saving(train_form(), name)))
    assert [r.name for r in services.training_presets.list()] == ["taken"]


def test_settings_a_run_would_refuse_are_not_saved(services: Services, train_form) -> None:
    with pytest.raises(gr.Error) as caught:
        save_preset(services, saving(train_form(learning_rate=-1.0, max_steps=0, dataset_id="no-such"), "broken"))

    assert "FT-009: learning_rate" in caught.value.message and "CF-005: max_steps 0" in caught.value.message
    assert "FT-014" in caught.value.message and "FT-002" not in caught.value.message  # a preset has no adapter name
    assert services.training_presets.list() == []


def test_a_recipe_without_model_or_dataset_is_a_preset_too(services: Services, train_form) -> None:
    save_preset(services, saving(train_form(model_id=None, dataset_id=None, prompt_id=None), "any-model"))

    values = load_preset(services, "any-model")
    assert (values["model_id"], values["dataset_id"]) == (None, None)


def test_delete_removes_it_and_a_missing_one_is_named(services: Services, train_form) -> None:
    save_preset(services, saving(train_form(), "short-lived"))

    picker, status = delete_preset(services, "short-lived")

    assert picker.choices == [] and "Deleted" in status and services.training_presets.list() == []
    assert refused(lambda: load_preset(services, "short-lived")) == "TP-002: training preset 'short-lived' not found"
    assert refused(lambda: delete_preset(services, None)) == "TP-002: choose a saved preset"
    assert saved_presets(services, "gone").value is None


def test_a_stored_row_an_import_brought_is_read_as_untrusted(services: Services) -> None:
    hostile = {"base_model_id": ["x"], "learning_rate": "fast", "run_dir": "/etc", "rewards": ["exact_match"]}
    with services.db.transaction() as tx:
        tx.training_presets.add(id="0" * 32, name="imported", config_preset="modern default", settings=json.dumps(hostile))
        tx.training_presets.add(id="1" * 32, name="not-json", config_preset="modern default", settings="{")

    message = refused(lambda: load_preset(services, "imported"))
    assert all(f"{field} has the wrong kind" in message for field in ("base_model_id", "learning_rate"))
    assert "unknown field 'run_dir'" in message and "rewards must be a list of objects" in message
    assert "TP-002: preset 'not-json' holds no readable settings" in refused(lambda: load_preset(services, "not-json"))


def test_a_preset_with_configs_chosen_by_id_is_for_the_command_line(services: Services, registered) -> None:
    training = services.configs.presets()[0].configs["training_arguments"].id
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        adapter_name="",
        prompt_id=registered.prompt_id,
        gpus="cpu",
        training_arguments_config_id=training,
    )
    services.training_presets.save("by-id", request, None)

    assert "TP-002: preset 'by-id' uses configs chosen by id" in refused(lambda: load_preset(services, "by-id"))


def test_a_demo_visitor_sees_and_deletes_only_its_own_presets(services: Services, train_form) -> None:
    page = demo_services(services)
    alice, bob = services_for_key(page, "alice-key"), services_for_key(page, "bob-key")
    save_preset(alice, saving(train_form(), "alice-recipe"))

    assert [r.name for r in alice.training_presets.list()] == ["alice-recipe"] and bob.training_presets.list() == []
    with pytest.raises(gr.Error, match="TP-002"):
        delete_preset(bob, "alice-recipe")
    save_preset(services, saving(train_form(), "host-recipe"))  # the host's: shared, read-only to visitors
    with pytest.raises(gr.Error, match="DM-008"):
        delete_preset(bob, "host-recipe")
    assert {r.name for r in services.training_presets.list()} == {"alice-recipe", "host-recipe"}
