"""Train: choose model, data and settings, see the preflight estimate, queue the run."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.prompts import DESCRIPTIONS, MODERN, LoraSettings, TrainingSettings, defaults, help_text
from ftapp.services import Services
from ui.choices import Picker
from ui.configs import field_help
from ui.errors import shows_errors
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
from ui.train_method import DATA_NEEDS, METHODS, MethodView, render_fields, show_method, starting_adapters
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
    """The user's choice while it still exists, else the first one, so a fresh page is ready to go."""
    values = [value for _, value in choices]
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
        max_steps=max(0, full["max_steps"]),
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


def _number(label: str, value: float, help_text: str, elem_id: str, precision: int | None = 0, minimum: float | None = None) -> gr.Number:
    return gr.Number(label=label, value=value, info=help_text, precision=precision, minimum=minimum, elem_id=elem_id)


def render(services: Services) -> None:
    training, lora = defaults("training_arguments"), defaults("lora_config")
    with gr.Tab("Train", id="train") as tab:
        gr.Markdown(
            "Choose a base model, a dataset and how to train. **Preflight** estimates memory and time "
            "before anything runs; **Start** queues the run, which keeps going if this page is closed."
        )
        with gr.Row():
            model = Picker(label="Base model", choices=[], value=None, elem_id="train-model")
            dataset = Picker(label="Dataset", choices=[], value=None, elem_id="train-dataset", info=DATA_NEEDS["sft"])
            prompt = Picker(label="Prompt", choices=[], value=None, elem_id="train-prompt")
        with gr.Row():
            adapter_name = gr.Textbox(
                label="Adapter name",
                placeholder="letters, digits and -, e.g. support-intents-v1",
                info="The name the trained adapter is registered under; it must be new.",
                elem_id="train-adapter-name",
            )
            devices = Picker(
                label="Devices",
                choices=[("auto", "auto")],
                value="auto",
                elem_id="train-devices",
                info="Where the run trains; a queued run waits until these are free.",
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
        method_fields = render_fields(services)
        gr.Markdown("### Hyper-parameters")
        with gr.Row():
            epochs = _number(
                "Epochs", training["num_train_epochs"], TRAINING_HELP["num_train_epochs"], "train-epochs", precision=None, minimum=0
            )
            max_steps = _number("Max steps (0: use the epochs)", 0, "Stop after this many optimizer steps.", "train-max-steps", minimum=0)
            learning_rate = _number(
                "Learning rate", training["learning_rate"], TRAINING_HELP["learning_rate"], "train-learning-rate", precision=None, minimum=0
            )
        with gr.Row():
            batch_size = _number(
                "Batch size",
                training["per_device_train_batch_size"],
                TRAINING_HELP["per_device_train_batch_size"],
                "train-batch-size",
                minimum=1,
            )
            grad_accumulation = _number(
                "Gradient accumulation",
                training["gradient_accumulation_steps"],
                TRAINING_HELP["gradient_accumulation_steps"],
                "train-grad-accumulation",
                minimum=1,
            )
            max_length = _number("Max length (tokens)", training["max_length"], TRAINING_HELP["max_length"], "train-max-length", minimum=8)
        with gr.Row():
            lora_r = _number("LoRA r", lora["r"], LORA_HELP["r"] + " Not used by a full fine-tune.", "train-lora-r", minimum=1)
            lora_alpha = _number("LoRA alpha", lora["lora_alpha"], LORA_HELP["lora_alpha"], "train-lora-alpha", precision=None, minimum=0)
            fraction = gr.Slider(
                0.01,
                1.0,
                value=1.0,
                step=0.01,
                label="Dataset fraction",
                elem_id="train-dataset-fraction",
                info="Share of the rows used, sampled with the seed before splitting.",
            )
            split = gr.Slider(
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
    model.change(bind(starting_adapters, services), [model, start_adapter], start_adapter, show_progress="hidden", api_visibility=PRIVATE)
    method.change(
        show_method,
        method,
        MethodView(dataset=dataset, dpo=method_fields.dpo, grpo=method_fields.grpo, start=method_fields.start),
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    preset.change(
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
    form = named_inputs(
        {
            "model_id": model,
            "dataset_id": dataset,
            "prompt_id": prompt,
            "adapter_name": adapter_name,
            "method": method,
            "training_mode": mode,
            "preset": preset,
            "devices": devices,
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
        },
        TrainForm,
    )
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
