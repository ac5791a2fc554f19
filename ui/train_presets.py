"""The Train tab's saved presets (save the form under a name, load it back, delete it) and the ``ftapp train``
command the form gives, shown before Start.

A preset stores the request the form builds (``ftapp.runs.training_presets``), so loading one turns that request
back into the form's fields: the four main training fields from its overrides, the rest of them into the "All
training arguments" editor, the method's fields and rewards. The adapter's name is not part of it: a new run
needs a new one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import gradio as gr

from ftapp.errors import FtappError, ValidationError
from ftapp.runs import FineTuneRequest, train_command
from ftapp.services import Services
from ui.errors import shows_errors
from ui.train_form import NO_PROMPT, TrainForm, find_preset, fine_tune_request
from ui.train_method import NO_ADAPTER, REWARD_SETTING, reward_rows

# Every field of the form but the adapter's name, in TrainForm's order: what loading a preset fills.
LOADED_FIELDS = tuple(f.name for f in fields(TrainForm) if f.name != "adapter_name")
# The form's main training fields and the TrainingArguments keys they stand for (ui.train_form.training_overrides).
MAIN_TRAINING_FIELDS = {
    "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "grad_accumulation": "gradient_accumulation_steps",
    "max_length": "max_length",
}
METHOD_FIELDS = {
    "dpo": {"dpo_beta": "beta", "dpo_loss_type": "loss_type"},
    "grpo": {
        "num_generations": "num_generations",
        "max_completion_length": "max_completion_length",
        "temperature": "temperature",
        "grpo_beta": "beta",
    },
}


@dataclass(frozen=True)
class PresetSaving(TrainForm):
    """The form and the name to save it under: ``/save_preset`` takes the form's fields and ``preset_name``."""

    preset_name: str = ""


def reward_table(rewards: tuple[Any, ...], allows_custom_code: bool) -> list[list[Any]]:
    """The rewards table with these rewards switched on (their weight and setting) and the others off."""
    rows = reward_rows(allows_custom_code)
    by_kind = {row[1]: row for row in rows}
    for row in rows:
        row[0] = False
    for reward in rewards:
        values = reward if isinstance(reward, dict) else asdict(reward)
        row = by_kind.get(values.get("kind"))
        if row is None:  # a kind this app does not offer (custom code in a shared app): the service refuses it anyway
            continue
        setting = values.get(REWARD_SETTING.get(row[1], ""))
        row[0], row[2], row[3] = True, values.get("weight", 1.0), row[3] if setting is None else str(setting)
    return rows


def form_values(request: FineTuneRequest, config_preset: str, allows_custom_code: bool) -> dict[str, Any]:
    """The form's fields that build ``request`` again from ``config_preset``; ``gr.skip()`` for another method's fields."""
    overrides = dict(request.overrides)
    values: dict[str, Any] = {
        "model_id": request.base_model_id or None,
        "dataset_id": request.dataset_id or None,
        "prompt_id": request.prompt_id or NO_PROMPT,
        "method": request.method,
        "training_mode": request.training_mode,
        "preset": config_preset,
        "devices": request.gpus,
        "num_epochs": request.num_epochs,
        "learning_rate": request.learning_rate,
        **{field: overrides.pop(key, None) for field, key in MAIN_TRAINING_FIELDS.items()},
        "lora_r": request.lora_overrides.get("r"),
        "lora_alpha": request.lora_overrides.get("lora_alpha"),
        "dataset_fraction": request.dataset_fraction,
        "train_split": request.train_test_split,
        "extra_arguments": json.dumps(overrides, indent=2, ensure_ascii=False) if overrides else "{}",
        "rewards": reward_table(request.rewards, allows_custom_code) if request.method == "grpo" else gr.skip(),
        "init_adapter_id": request.init_adapter_id or NO_ADAPTER,
    }
    for method, names in METHOD_FIELDS.items():
        for field, key in names.items():
            values[field] = request.method_settings.get(key) if request.method == method else gr.skip()
    # Fields added to the form later that the request holds by the same name.
    for field in LOADED_FIELDS:
        if field not in values:
            values[field] = getattr(request, field) if hasattr(request, field) else gr.skip()
    return values


@shows_errors
def saved_presets(services: Services, selected: str | None) -> gr.Dropdown:
    """The saved training presets' names, keeping the one chosen while it exists."""
    names = [record.name for record in services.training_presets.list()]
    return gr.Dropdown(choices=names, value=selected if selected in names else None)


@shows_errors
def save_preset(services: Services, request: PresetSaving) -> tuple[gr.Dropdown, str]:
    """Save the form (all but the adapter's name) as a preset named ``preset_name``."""
    shipped = find_preset(services.configs.presets(), request.preset)
    saved = services.training_presets.save(request.preset_name, fine_tune_request(request, shipped), shipped.name)
    return saved_presets(services, saved.name), f"Saved the form as the preset **{saved.name}** (all but the adapter's name)."


@shows_errors
def load_preset(services: Services, preset_name: str | None) -> dict[str, Any]:
    """Fill the form from a saved preset: every field but the adapter's name, which a new run needs anew.

    By name: the form's fields (``LOADED_FIELDS``), ``preset_note`` (what the config preset is) and ``status``."""
    preset = services.training_presets.for_form(preset_name or "")
    assert preset.config_preset is not None, "for_form refuses the others"
    values = form_values(preset.request, preset.config_preset, services.settings.allows_custom_code)
    shipped = find_preset(services.configs.presets(), preset.config_preset)
    note = f"Loaded **{preset.name}**. Give the adapter a new name, then Preflight or Start."
    return {**values, "preset_note": f"*{shipped.description}*", "status": note}


def by_component(handler: Callable[..., dict[str, Any]], outputs: dict[str, Any]) -> Callable[..., dict[Any, Any]]:
    """``handler``, answering ``{component: value}`` for the ``{name: value}`` it returns (``outputs``: name -> component),
    with its name, docstring and signature, which gradio shows as the API endpoint's."""

    @functools.wraps(handler)
    def keyed(*args: Any, **kwargs: Any) -> dict[Any, Any]:
        return {outputs[name]: value for name, value in handler(*args, **kwargs).items()}

    return keyed


@shows_errors
def delete_preset(services: Services, preset_name: str | None) -> tuple[gr.Dropdown, str]:
    """Delete a saved preset (runs started from it keep their settings)."""
    services.training_presets.remove(preset_name or "")
    return saved_presets(services, None), f"Deleted the preset **{preset_name}**."


def command_text(services: Services, form: TrainForm) -> str:
    """The ``ftapp train`` command that queues what Start would, or what is wrong with the form, as shell comments:
    it follows every keystroke, so a half-typed form is no error toast."""
    try:
        preset = find_preset(services.configs.presets(), form.preset)
        return train_command(fine_tune_request(form, preset), preset.name)
    except FtappError as error:
        lines = [str(p) for p in error.problems] if isinstance(error, ValidationError) else [str(error)]
        return "\n".join(f"# {line}" for line in lines)
