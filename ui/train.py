"""Train: choose model, data and settings, see the preflight estimate, queue the run."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.prompts import DESCRIPTIONS, MODERN, LoraSettings, TrainingSettings, defaults, help_text
from ftapp.runs import ADAPTER_NAME_HINT, STRATEGY_CHOICES, STRATEGY_HELP
from ftapp.services import Services
from ui.choices import Picker
from ui.configs import field_help
from ui.errors import shows_errors
from ui.shares import Share
from ui.train_form import (
    NO_PROMPT,
    SELF_DESCRIBING_FORMATS,
    TrainForm,
    device_choices,
    estimate_line,
    find_preset,
    fine_tune_request,
    preflight_markdown,
)
from ui.train_framework import axolotl_configs, render_framework, show_framework
from ui.train_method import DATA_NEEDS, METHODS, MethodView, render_fields, show_method, starting_adapters
from ui.train_presets import (
    LOADED_FIELDS,
    PresetSaving,
    by_component,
    command_text,
    delete_preset,
    load_preset,
    save_preset,
    saved_presets,
)
from ui.wiring import PRIVATE, bind, bind_request, named_inputs, on_show

TRAINING_HELP = help_text(TrainingSettings)
LORA_HELP = help_text(LoraSettings)
MODES = [("LoRA", "lora"), ("QLoRA (4-bit base, CUDA only)", "qlora"), ("Full fine-tune", "full")]
EXTRA_HELP = (
    'Any other TrainingArguments field as JSON, e.g. `{"lr_scheduler_type": "constant", "eval_steps": 20}`. '
    "These are applied last: a key here wins over the same field above. Unknown keys are refused."
)


class Choices(NamedTuple):
    """The pickers whose choices come from the database, in one order: inputs and outputs of ``refresh_choices``."""

    model: Any
    dataset: Any
    preset: Any
    devices: Any
    prompt: Any


class PresetFields(NamedTuple):
    """The main fields a preset fills, and what the preset is for."""

    num_epochs: Any
    max_steps: Any
    learning_rate: Any
    batch_size: Any
    grad_accumulation: Any
    max_length: Any
    lora_r: Any
    lora_alpha: Any
    note: Any


def _keep(choices: list[tuple[str, str]], selected: str | None) -> str | None:
    """The user's choice while it still exists, else the first one, so a fresh page is ready to go; a picker the
    user cleared ("") stays cleared."""
    values = [value for _, value in choices]
    if selected == "":
        return None
    return selected if selected in values else (values[0] if values else None)


@shows_errors
def refresh_choices(
    services: Services, model_id: str | None, dataset_id: str | None, preset: str | None, devices: str | None, prompt_id: str | None
) -> Choices:
    """Model, dataset, preset, devices and prompt choices, keeping what the user chose.

    Only choices are refreshed on show: the hyper-parameters the user typed stay as they are.
    """
    models = [(m.name, m.id) for m in services.models.list()]
    datasets = [(f"{d.name} ({d.format}, {d.num_rows if d.num_rows is not None else '?'} rows)", d.id) for d in services.datasets.list()]
    presets = [(p.name, p.name) for p in services.configs.presets()]
    machine_devices = device_choices(services.machine())
    dataset_id = _keep(datasets, dataset_id)
    return Choices(
        model=gr.Dropdown(choices=models, value=_keep(models, model_id)),
        dataset=gr.Dropdown(choices=datasets, value=dataset_id),
        # A fresh page starts from the modern recipe; the seed's slow defaults stay one click away.
        preset=gr.Dropdown(choices=presets, value=_keep(presets, preset or MODERN)),
        devices=gr.Dropdown(choices=machine_devices, value=_keep(machine_devices, devices)),
        # A prompt written in the Prompts tab since shows up without choosing the dataset again.
        prompt=prompts_for_dataset(services, dataset_id, prompt_id),
    )


@shows_errors
def prompts_for_dataset(services: Services, dataset_id: str | None, prompt_id: str | None) -> gr.Dropdown:
    if not dataset_id:
        return gr.Dropdown(choices=[], value=None, label="Prompt")
    dataset = services.datasets.get(dataset_id)
    choices = [(p.name, p.id) for p in services.prompts.list(dataset_id)]
    if dataset.format in SELF_DESCRIBING_FORMATS:
        choices.append((f"none: use the {dataset.format} layout as it is", NO_PROMPT))
        label = f"Prompt (optional for {dataset.format} data)"
    elif dataset.format == "preference":
        choices.insert(0, ("none: DPO reads the pairs as they are", NO_PROMPT))
        label = "Prompt (none needed for preference pairs)"
    else:
        label = (
            "Prompt (required: it maps the columns to text)"
            if choices
            else ("Prompt (required: write one for this dataset in the Prompts tab)")
        )
    return gr.Dropdown(choices=choices, value=_keep(choices, prompt_id), label=label)


@shows_errors
def apply_preset(services: Services, preset_name: str | None) -> PresetFields:
    """The preset's values in the main fields, and what the preset is for."""
    preset = find_preset(services.configs.presets(), preset_name)
    training = preset.configs["training_arguments"].values
    lora = preset.configs["lora_config"].values
    full = {**defaults("training_arguments"), **training}
    return PresetFields(
        num_epochs=full["num_train_epochs"],
        max_steps=full["max_steps"],
        learning_rate=full["learning_rate"],
        batch_size=full["per_device_train_batch_size"],
        grad_accumulation=full["gradient_accumulation_steps"],
        max_length=full["max_length"],
        lora_r=lora.get("r"),
        lora_alpha=lora.get("lora_alpha"),
        note=f"*{preset.description}*",
    )


@shows_errors
def preflight(services: Services, form: TrainForm) -> str:
    """Estimate peak memory and time of this fine-tune on its device, storing nothing."""
    # The preset's LoRA config stands in for a changed rank: the estimate does not depend on it,
    # and a preflight must not store anything.
    request = fine_tune_request(form, find_preset(services.configs.presets(), form.preset))
    problems, estimate = services.runs.check(request)
    if estimate is None:
        raise ValidationError(problems)
    return preflight_markdown(estimate, problems)


@shows_errors
def start_training(services: Services, form: TrainForm) -> str:
    """Queue this fine-tune; it starts once its devices are free and keeps going if the page closes."""
    preset = find_preset(services.configs.presets(), form.preset)
    run, estimate = services.runs.submit(fine_tune_request(form, preset))
    return (
        f"### ⏳ Queued run `{run.id}`\n"
        f"Adapter **{run.name}**; it starts as soon as its devices ({run.devices_requested}) are free. "
        f"Open the **Runs** tab to follow its loss, log and progress.\n\n"
        f"Estimate: {estimate_line(estimate)}."
    )


def _number(label: str, value: float, help_text: str, elem_id: str, precision: int | None = 0) -> gr.Number:
    # No minimum or maximum: gradio would refuse an out-of-range number itself, with neither the field's name nor a
    # rule id (``Value -1 is less than minimum value 0.``); ftapp's own checks answer instead (FT-009, CF-005, ...).
    return gr.Number(label=label, value=value, info=help_text, precision=precision, elem_id=elem_id)


def render(services: Services) -> None:
    training, lora = defaults("training_arguments"), defaults("lora_config")
    with gr.Tab("Train", id="train") as tab:
        gr.Markdown(
            "Choose a base model, a dataset and how to train. **Preflight** estimates memory and time "
            "before anything runs; **Start** queues the run, which keeps going if this page is closed."
        )
        with gr.Row():
            saved = Picker(
                label="Saved presets",
                choices=[],
                value=None,
                elem_id="train-saved-preset",
                info="Train forms saved under a name: Load fills the form with one (all but the adapter's name).",
            )
            load_button = gr.Button("Load", elem_id="train-load-preset", scale=0, min_width=90)
            delete_button = gr.Button("Delete", elem_id="train-delete-preset", scale=0, min_width=90)
            preset_name = gr.Textbox(
                label="Save the form as",
                placeholder="e.g. support-recipe",
                info="A name for these settings, used again here or with `ftapp train --preset NAME`.",
                elem_id="train-preset-name",
            )
            save_button = gr.Button("Save preset", elem_id="train-save-preset", scale=0, min_width=130)
        preset_status = gr.Markdown(elem_id="train-preset-status")
        with gr.Row():
            # Clearable (allow_custom_value): gradio's dropdown otherwise puts the last choice back when its text is
            # deleted, so a cleared dataset silently trained on the one before. Cleared, it sends "" and Start says FT-014.
            model = Picker(label="Base model", choices=[], value=None, elem_id="train-model", allow_custom_value=True)
            dataset = Picker(
                label="Dataset", choices=[], value=None, elem_id="train-dataset", info=DATA_NEEDS["sft"], allow_custom_value=True
            )
            prompt = Picker(label="Prompt", choices=[], value=None, elem_id="train-prompt", allow_custom_value=True)
        with gr.Row():
            adapter_name = gr.Textbox(
                label="Adapter name",
                placeholder="e.g. support-intents-v1",
                info=f"The name the trained adapter is registered under: {ADAPTER_NAME_HINT}.",
                elem_id="train-adapter-name",
            )
            devices = Picker(
                label="Devices",
                choices=[("auto", "auto")],
                value="auto",
                elem_id="train-devices",
                info="Where the run trains; a queued run waits until these are free.",
            )
            strategy = gr.Dropdown(
                label="Strategy", choices=list(STRATEGY_CHOICES), value="auto", elem_id="train-strategy", info=STRATEGY_HELP
            )
        with gr.Row():
            method = gr.Radio(
                label="Method",
                choices=METHODS,
                value="sft",
                elem_id="train-method",
                info="SFT learns answers; DPO prefers chosen over rejected answers; GRPO samples "
                "answers and learns from verifiable rewards.",
            )
            mode = gr.Radio(label="Training mode", choices=MODES, value="lora", elem_id="train-mode")
            with gr.Column():
                preset = Picker(
                    label="Preset",
                    choices=[(MODERN, MODERN)],
                    value=MODERN,
                    elem_id="train-preset",
                    info="Stored configs the run starts from; the fields below fill from it.",
                )
                preset_note = gr.Markdown(f"*{DESCRIPTIONS[MODERN]}*")
        with gr.Row():
            framework = render_framework()
        method_fields = render_fields(services)
        gr.Markdown("### Hyper-parameters")
        with gr.Row():
            epochs = _number("Epochs", training["num_train_epochs"], TRAINING_HELP["num_train_epochs"], "train-epochs", precision=None)
            max_steps = _number("Max steps (-1: run the epochs)", training["max_steps"], TRAINING_HELP["max_steps"], "train-max-steps")
            learning_rate = _number(
                "Learning rate", training["learning_rate"], TRAINING_HELP["learning_rate"], "train-learning-rate", precision=None
            )
        with gr.Row():
            batch_size = _number(
                "Batch size",
                training["per_device_train_batch_size"],
                TRAINING_HELP["per_device_train_batch_size"],
                "train-batch-size",
            )
            grad_accumulation = _number(
                "Gradient accumulation",
                training["gradient_accumulation_steps"],
                TRAINING_HELP["gradient_accumulation_steps"],
                "train-grad-accumulation",
            )
            max_length = _number("Max length (tokens)", training["max_length"], TRAINING_HELP["max_length"], "train-max-length")
        with gr.Row():
            lora_r = _number("LoRA r", lora["r"], LORA_HELP["r"] + " Not used by a full fine-tune.", "train-lora-r")
            lora_alpha = _number("LoRA alpha", lora["lora_alpha"], LORA_HELP["lora_alpha"], "train-lora-alpha", precision=None)
            fraction = Share(
                0.01,
                1.0,
                value=1.0,
                step=0.01,
                label="Dataset fraction",
                elem_id="train-dataset-fraction",
                info="Share of the rows used, sampled with the seed before splitting.",
            )
            split = Share(
                0.5,
                1.0,
                value=0.9,
                step=0.01,
                label="Train split",
                elem_id="train-train-split",
                info="Share of the used rows trained on; the rest measures eval loss (1: no eval).",
            )
        with gr.Accordion("All training arguments", open=False):
            gr.Markdown(EXTRA_HELP)
            extra = gr.Code(
                value="{}", language="json", label="Extra TrainingArguments (JSON)", lines=4, max_lines=16, elem_id="train-extra-arguments"
            )
            gr.Dataframe(
                field_help("training_arguments"),
                label="TrainingArguments fields",
                interactive=False,
                wrap=True,
                max_height=360,
                column_widths=["18%", "12%", "12%", "22%", "36%"],
            )
        command = gr.Code(
            language="shell",
            label="The same run from the command line (follows the form)",
            interactive=False,
            lines=3,
            max_lines=30,
            wrap_lines=True,
            elem_id="train-command",
        )
        with gr.Row():
            preflight_button = gr.Button("Preflight", elem_id="train-preflight", scale=0, min_width=180)
            start_button = gr.Button("Start training", variant="primary", elem_id="train-start", scale=0, min_width=220)
        with gr.Row(equal_height=False):
            preflight_result = gr.Markdown(elem_id="train-preflight-result")
            start_result = gr.Markdown(elem_id="train-start-result")

    pickers = Choices(model=model, dataset=dataset, preset=preset, devices=devices, prompt=prompt)
    on_show(tab, bind(refresh_choices, services), pickers, inputs=pickers)
    dataset.change(bind(prompts_for_dataset, services), [dataset, prompt], prompt, show_progress="hidden", api_visibility=PRIVATE)
    start_adapter = method_fields.start_adapter
    on_show(tab, bind(starting_adapters, services), [start_adapter], inputs=[model, start_adapter])
    on_show(tab, bind(axolotl_configs, services), [framework.axolotl_config], inputs=[framework.axolotl_config])
    framework.framework.change(
        show_framework, framework.framework, framework.axolotl_config, show_progress="hidden", api_visibility=PRIVATE
    )
    model.change(bind(starting_adapters, services), [model, start_adapter], start_adapter, show_progress="hidden", api_visibility=PRIVATE)
    method.change(
        show_method,
        method,
        MethodView(dataset=dataset, dpo=method_fields.dpo, grpo=method_fields.grpo, start=method_fields.start),
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    # input, not change: only the user's choice fills the fields from the configs; a loaded preset sets the picker
    # together with its own values for them.
    preset.input(
        bind(apply_preset, services),
        preset,
        PresetFields(
            num_epochs=epochs,
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            grad_accumulation=grad_accumulation,
            max_length=max_length,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            note=preset_note,
        ),
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    widgets = {
        "model_id": model,
        "dataset_id": dataset,
        "prompt_id": prompt,
        "adapter_name": adapter_name,
        "method": method,
        "training_mode": mode,
        "preset": preset,
        "devices": devices,
        "strategy": strategy,
        "num_epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "grad_accumulation": grad_accumulation,
        "max_length": max_length,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "dataset_fraction": fraction,
        "train_split": split,
        "extra_arguments": extra,
        **method_fields.inputs,
        "framework": framework.framework,
        "axolotl_config_id": framework.axolotl_config,
    }
    form = named_inputs(widgets, TrainForm)
    # Page load and every change of a field: the command that queues what Start would.
    gr.on(
        None,
        bind_request(command_text, services, TrainForm),
        inputs_kwargs=form,
        outputs=command,
        show_progress="hidden",
        trigger_mode="always_last",
        api_visibility=PRIVATE,
    )
    on_show(tab, bind(saved_presets, services), [saved], inputs=[saved], api_name="list_presets")
    save_button.click(
        bind_request(save_preset, services, PresetSaving),
        inputs_kwargs=named_inputs({**widgets, "preset_name": preset_name}, PresetSaving),
        outputs=[saved, preset_status],
        api_name="save_preset",
    )
    loaded = {**{name: widgets[name] for name in LOADED_FIELDS}, "preset_note": preset_note, "status": preset_status}
    load_button.click(
        by_component(bind(load_preset, services), loaded), inputs=saved, outputs=list(loaded.values()), api_name="load_preset"
    )
    delete_button.click(bind(delete_preset, services), inputs=saved, outputs=[saved, preset_status], api_name="delete_preset")
    preflight_button.click(bind_request(preflight, services, TrainForm), inputs_kwargs=form, outputs=preflight_result, api_name="preflight")
    # One start at a time: a double click must not queue the same adapter twice.
    start_button.click(
        bind_request(start_training, services, TrainForm),
        inputs_kwargs=form,
        outputs=start_result,
        concurrency_limit=1,
        concurrency_id="train-start",
        api_name="start_training",
    )
