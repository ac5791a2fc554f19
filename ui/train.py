"""Train: choose model, data and settings, see the preflight estimate, queue the run."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftapp.errors import ValidationError
from ftapp.prompts import DESCRIPTIONS, MODERN, LoraSettings, TrainingArguments, defaults, help_text
from ftapp.services import Services
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
from ui.train_method import DATA_NEEDS, METHODS, render_fields, show_method, starting_adapters
from ui.wiring import bind, on_show

TRAINING_HELP = help_text(TrainingArguments)
LORA_HELP = help_text(LoraSettings)
MODES = [("LoRA", "lora"), ("QLoRA (4-bit base, CUDA only)", "qlora"), ("Full fine-tune", "full")]
EXTRA_HELP = (
    "Any other TrainingArguments field as JSON, e.g. `{\"lr_scheduler_type\": \"constant\", \"eval_steps\": 20}`. "
    "These are applied last: a key here wins over the same field above. Unknown keys are refused."
)


def _keep(choices: list[tuple[str, str]], selected: str | None) -> str | None:
    """The user's choice while it still exists, else the first one, so a fresh page is ready to go."""
    values = [value for _, value in choices]
    return selected if selected in values else (values[0] if values else None)


@shows_errors
def refresh_choices(services: Services, model_id: str | None, dataset_id: str | None, preset: str | None,
                    devices: str | None, prompt_id: str | None) -> tuple[gr.Dropdown, ...]:
    """Model, dataset, preset, devices and prompt choices, keeping what the user chose.

    Only choices are refreshed on show: the hyper-parameters the user typed stay as they are.
    """
    models = [(m.name, m.id) for m in services.models.list()]
    datasets = [(f"{d.name} ({d.format}, {d.num_rows if d.num_rows is not None else '?'} rows)", d.id)
                for d in services.datasets.list()]
    presets = [(p.name, p.name) for p in services.configs.presets()]
    machine_devices = device_choices(services.machine())
    dataset_id = _keep(datasets, dataset_id)
    return (
        gr.Dropdown(choices=models, value=_keep(models, model_id)),
        gr.Dropdown(choices=datasets, value=dataset_id),
        # A fresh page starts from the modern recipe; the seed's slow defaults stay one click away.
        gr.Dropdown(choices=presets, value=_keep(presets, preset or MODERN)),
        gr.Dropdown(choices=machine_devices, value=_keep(machine_devices, devices)),
        # A prompt written in the Prompts tab since shows up without choosing the dataset again.
        prompts_for_dataset(services, dataset_id, prompt_id),
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
        label = "Prompt (required: it maps the columns to text)" if choices else (
            "Prompt (required: write one for this dataset in the Prompts tab)")
    return gr.Dropdown(choices=choices, value=_keep(choices, prompt_id), label=label)


@shows_errors
def apply_preset(services: Services, preset_name: str | None) -> tuple[Any, ...]:
    """The preset's values in the main fields, and what the preset is for."""
    preset = find_preset(services.configs.presets(), preset_name)
    training = preset.configs["training_arguments"].values
    lora = preset.configs["lora_config"].values
    full = {**defaults("training_arguments"), **training}
    return (
        full["num_train_epochs"], max(0, full["max_steps"]), full["learning_rate"],
        full["per_device_train_batch_size"], full["gradient_accumulation_steps"], full["max_length"],
        lora.get("r"), lora.get("lora_alpha"), f"*{preset.description}*",
    )


@shows_errors
def preflight(services: Services, *values: Any) -> str:
    form = TrainForm(*values)
    # The preset's LoRA config stands in for a changed rank: the estimate does not depend on it,
    # and a preflight must not store anything.
    request = fine_tune_request(form, find_preset(services.configs.presets(), form.preset))
    problems, estimate = services.runs.check(request)
    if estimate is None:
        raise ValidationError(problems)
    return preflight_markdown(estimate, problems)


@shows_errors
def start(services: Services, *values: Any) -> str:
    form = TrainForm(*values)
    preset = find_preset(services.configs.presets(), form.preset)
    run, estimate = services.runs.submit(fine_tune_request(form, preset))
    return (
        f"### ⏳ Queued run `{run.id}`\n"
        f"Adapter **{run.name}**; it starts as soon as its devices ({run.devices_requested}) are free. "
        f"Open the **Runs** tab to follow its loss, log and progress.\n\n"
        f"Estimate: {estimate_line(estimate)}."
    )


def _number(label: str, value: float, help_text: str, elem_id: str, precision: int | None = 0,
            minimum: float | None = None) -> gr.Number:
    return gr.Number(label=label, value=value, info=help_text, precision=precision, minimum=minimum, elem_id=elem_id)


def render(services: Services) -> None:
    training, lora = defaults("training_arguments"), defaults("lora_config")
    with gr.Tab("Train", id="train") as tab:
        gr.Markdown("Choose a base model, a dataset and how to train. **Preflight** estimates memory and time "
                    "before anything runs; **Start** queues the run, which keeps going if this page is closed.")
        with gr.Row():
            model = gr.Dropdown(label="Base model", choices=[], value=None, elem_id="train-model")
            dataset = gr.Dropdown(label="Dataset", choices=[], value=None, elem_id="train-dataset",
                                  info=DATA_NEEDS["sft"])
            prompt = gr.Dropdown(label="Prompt", choices=[], value=None, elem_id="train-prompt")
        with gr.Row():
            adapter_name = gr.Textbox(label="Adapter name", placeholder="letters, digits and -, e.g. support-intents-v1",
                                      info="The name the trained adapter is registered under; it must be new.",
                                      elem_id="train-adapter-name")
            devices = gr.Dropdown(label="Devices", choices=[("auto", "auto")], value="auto", elem_id="train-devices",
                                  info="Where the run trains; a queued run waits until these are free.")
        with gr.Row():
            method = gr.Radio(label="Method", choices=METHODS, value="sft", elem_id="train-method",
                              info="SFT learns answers; DPO prefers chosen over rejected answers; GRPO samples "
                                   "answers and learns from verifiable rewards.")
            mode = gr.Radio(label="Training mode", choices=MODES, value="lora", elem_id="train-mode")
            with gr.Column():
                preset = gr.Dropdown(label="Preset", choices=[(MODERN, MODERN)], value=MODERN, elem_id="train-preset",
                                     info="Stored configs the run starts from; the fields below fill from it.")
                preset_note = gr.Markdown(f"*{DESCRIPTIONS[MODERN]}*")
        method_fields = render_fields(services)
        gr.Markdown("### Hyper-parameters")
        with gr.Row():
            epochs = _number("Epochs", training["num_train_epochs"], TRAINING_HELP["num_train_epochs"], "train-epochs",
                             precision=None, minimum=0)
            max_steps = _number("Max steps (0: use the epochs)", 0, "Stop after this many optimizer steps.",
                                "train-max-steps", minimum=0)
            learning_rate = _number("Learning rate", training["learning_rate"], TRAINING_HELP["learning_rate"],
                                    "train-learning-rate", precision=None, minimum=0)
        with gr.Row():
            batch_size = _number("Batch size", training["per_device_train_batch_size"],
                                 TRAINING_HELP["per_device_train_batch_size"], "train-batch-size", minimum=1)
            grad_accumulation = _number("Gradient accumulation", training["gradient_accumulation_steps"],
                                        TRAINING_HELP["gradient_accumulation_steps"], "train-grad-accumulation", minimum=1)
            max_length = _number("Max length (tokens)", training["max_length"], TRAINING_HELP["max_length"],
                                 "train-max-length", minimum=8)
        with gr.Row():
            lora_r = _number("LoRA r", lora["r"], LORA_HELP["r"] + " Not used by a full fine-tune.", "train-lora-r", minimum=1)
            lora_alpha = _number("LoRA alpha", lora["lora_alpha"], LORA_HELP["lora_alpha"], "train-lora-alpha",
                                 precision=None, minimum=0)
            fraction = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="Dataset fraction", elem_id="train-dataset-fraction",
                                 info="Share of the rows used, sampled with the seed before splitting.")
            split = gr.Slider(0.5, 1.0, value=0.9, step=0.01, label="Train split", elem_id="train-train-split",
                              info="Share of the used rows trained on; the rest measures eval loss (1: no eval).")
        with gr.Accordion("All training arguments", open=False):
            gr.Markdown(EXTRA_HELP)
            extra = gr.Code(value="{}", language="json", label="Extra TrainingArguments (JSON)", lines=4,
                            max_lines=16, elem_id="train-extra-arguments")
            gr.Dataframe(field_help("training_arguments"), label="TrainingArguments fields", interactive=False,
                         wrap=True, max_height=360, column_widths=["18%", "12%", "12%", "22%", "36%"])
        with gr.Row():
            preflight_button = gr.Button("Preflight", elem_id="train-preflight", scale=0, min_width=180)
            start_button = gr.Button("Start training", variant="primary", elem_id="train-start", scale=0, min_width=220)
        with gr.Row(equal_height=False):
            preflight_result = gr.Markdown(elem_id="train-preflight-result")
            start_result = gr.Markdown(elem_id="train-start-result")

    pickers = [model, dataset, preset, devices, prompt]
    on_show(tab, bind(refresh_choices, services), pickers, inputs=pickers)
    dataset.change(bind(prompts_for_dataset, services), [dataset, prompt], prompt, show_progress="hidden")
    start_adapter = method_fields.start_adapter
    on_show(tab, bind(starting_adapters, services), [start_adapter], inputs=[model, start_adapter])
    model.change(bind(starting_adapters, services), [model, start_adapter], start_adapter, show_progress="hidden")
    method.change(show_method, method, [dataset, method_fields.dpo, method_fields.grpo, method_fields.start],
                  show_progress="hidden")
    preset.change(bind(apply_preset, services), preset,
                  [epochs, max_steps, learning_rate, batch_size, grad_accumulation, max_length, lora_r, lora_alpha,
                   preset_note], show_progress="hidden")
    form = [model, dataset, prompt, adapter_name, method, mode, preset, devices, epochs, max_steps, learning_rate,
            batch_size, grad_accumulation, max_length, lora_r, lora_alpha, fraction, split, extra, *method_fields.inputs]
    preflight_button.click(bind(preflight, services), form, preflight_result)
    # One start at a time: a double click must not queue the same adapter twice.
    start_button.click(bind(start, services), form, start_result, concurrency_limit=1, concurrency_id="train-start")
