"""Prompts: templates over a dataset's columns, generated or written, previewed on real rows."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from ftapp.errors import ValidationError
from ftapp.prompts import CHAT_FORMATS, AddPromptRequest, Segment, chat_preview_by_id
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, check_removal, on_show, picker

PREVIEW_ROWS = 3
EMPTY_PREVIEW = "<p><i>Choose a dataset and write or generate templates to see them rendered on real rows.</i></p>"
LIST_COLUMNS = ["name", "dataset", "completion", "description", "added", "id"]
COLUMN_WIDTHS = ["16%", "16%", "12%", "24%", "12%", "20%"]  # keeps empty columns readable
TEMPLATE_HELP = (
    "Write `{column}` where a dataset column goes; a literal brace is `{{` or `}}`. The model is trained on "
    "the prompt template; the loss is taken on the part the completion template renders, so input + "
    "completion should equal the prompt template."
)
EMPTY_CHAT_PREVIEW = "<p><i>Choose a model to see the first conversations rendered through its chat template.</i></p>"
CHAT_HELP = (
    "This dataset holds conversations: they train through the model's chat template, with the loss on the "
    "assistant turns, so no prompt is needed. Templates written below replace the chat template when saved "
    "and chosen for a run."
)
CHAT_LEGEND = "**Conversations through the chat template** (highlighted: trained on; the rest is masked)"


def list_prompts(services: Services) -> tuple[pd.DataFrame, gr.Dropdown, gr.Dropdown]:
    """The saved prompts (name, dataset, completion template, id), then the prompt and dataset pickers' choices."""
    prompts = services.prompts.list()
    datasets = services.datasets.list()
    names = {d.id: d.name for d in datasets}
    rows = [
        {
            "name": p.name,
            "dataset": names.get(p.dataset_id, p.dataset_id),
            "completion": p.completion_template,
            "description": p.description,
            "added": p.created_at,
            "id": p.id,
        }
        for p in prompts
    ]
    return (
        frame(rows, LIST_COLUMNS),
        gr.Dropdown(choices=[(p.name, p.id) for p in prompts]),
        gr.Dropdown(choices=[(d.name, d.id) for d in datasets]),
    )


@shows_errors
def generate_templates(services: Services, dataset_id: str | None) -> tuple[str, str, str, str]:
    """Prompt, input and completion templates generated from a dataset's columns, and a note on them."""
    if not dataset_id:
        raise gr.Error("Choose a dataset first.")
    generated = services.prompts.generate(dataset_id)
    note = f"Generated from the columns; the completion is column **{generated.output_column}**."
    return generated.prompt_template, generated.input_template, generated.completion_template, note


def _rendered_row(number: int, input_text: str, completion: str) -> str:
    return (
        f"<p><b>Row {number}</b></p>"
        f"<pre style='white-space: pre-wrap; margin: 0 0 1em 0'>{html.escape(input_text)}"
        f"<mark title='completion: the loss is taken here'>{html.escape(completion)}</mark></pre>"
    )


@shows_errors
def preview_prompt(services: Services, dataset_id: str | None, prompt_template: str, input_template: str, completion_template: str) -> str:
    """The templates rendered on the dataset's first rows, as HTML with the completion highlighted."""
    if not dataset_id or not (prompt_template or input_template or completion_template):
        return EMPTY_PREVIEW
    try:
        rows = services.prompts.render_preview(
            dataset_id,
            prompt_template,
            input_template,
            completion_template,
            limit=PREVIEW_ROWS,
        )
    except ValidationError as error:
        # The preview follows every keystroke; half-typed placeholders are normal there, so the
        # problems are shown in place instead of as an error toast. Saving still raises them.
        items = "".join(f"<li>{html.escape(str(p))}</li>" for p in error.problems)
        return f"<p><b>Not yet renderable:</b></p><ul>{items}</ul>"
    parts = [_rendered_row(n, r.input, r.completion) for n, r in enumerate(rows, start=1)]
    if input_template + completion_template != prompt_template:
        parts.insert(
            0,
            "<p><b>Note:</b> input + completion differ from the prompt template; the model "
            "trains on the prompt template and the highlighted part may not be where the loss is.</p>",
        )
    return "".join(parts)


def list_chat_models(services: Services, selected: str | None) -> gr.Dropdown:
    """The registered models whose chat template can render conversations; the first one by default."""
    choices = [(m.name, m.id) for m in services.models.list()]
    return picker(choices, selected or (choices[0][1] if choices else None))


@shows_errors
def chat_mode(services: Services, dataset_id: str | None) -> tuple[gr.Column, bool]:
    """Show the chat-template preview when the chosen dataset holds conversations."""
    is_chat = bool(dataset_id) and services.datasets.get(dataset_id).format in CHAT_FORMATS
    return gr.Column(visible=is_chat), is_chat


def _rendered_conversation(number: int, segments: list[Segment]) -> str:
    parts = "".join(
        f"<mark title='assistant turn: trained on'>{html.escape(s.text)}</mark>" if s.trained else html.escape(s.text) for s in segments
    )
    return f"<p><b>Row {number}</b></p><pre style='white-space: pre-wrap; margin: 0 0 1em 0'>{parts}</pre>"


@shows_errors
def preview_chat(services: Services, dataset_id: str | None, model_id: str | None, is_chat: bool) -> str:
    """The dataset's first conversations through the model's chat template, the trained parts highlighted."""
    if not (is_chat and dataset_id and model_id):
        return EMPTY_CHAT_PREVIEW
    rows = chat_preview_by_id(services, model_id, dataset_id, limit=PREVIEW_ROWS)
    return "".join(_rendered_conversation(n, segments) for n, segments in enumerate(rows, start=1))


@shows_errors
def save_prompt(
    services: Services,
    name: str,
    dataset_id: str | None,
    prompt_template: str,
    input_template: str,
    completion_template: str,
    description: str,
) -> str:
    """Save a prompt: templates over a dataset's columns."""
    record = services.prompts.add(
        AddPromptRequest(
            name=name,
            dataset_id=dataset_id or "",
            prompt_template=prompt_template,
            input_template=input_template,
            completion_template=completion_template,
            description=description,
        )
    )
    return f"Saved prompt **{record.name}**."


@shows_errors
def show_prompt(services: Services, prompt_id: str | None) -> tuple[str, str, str, str]:
    """A saved prompt's templates and dataset, loaded back into the editor."""
    if not prompt_id:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    record = services.prompts.get(prompt_id)
    return record.dataset_id, record.prompt_template, record.input_template, record.completion_template


@shows_errors
def remove_prompt(services: Services, prompt_id: str | None, confirmed: bool) -> tuple[str, None, bool]:
    """Remove a prompt (``confirmed`` must be true)."""
    check_removal(prompt_id, confirmed, "a prompt")
    services.prompts.remove(prompt_id)
    return "Removed the prompt.", None, False


def render(services: Services) -> None:
    with gr.Tab("Prompts", id="prompts") as tab:
        with gr.Row():
            dataset = Picker(label="Dataset", choices=[], value=None, scale=2)
            generate_button = gr.Button("Generate from columns", scale=0, min_width=260)
        generated_note = gr.Markdown()
        is_chat = gr.State(False)
        with gr.Column(visible=False) as chat_block:
            gr.Markdown(CHAT_HELP)
            chat_model = Picker(label="Model (its chat template renders the conversations)", choices=[], value=None)
            gr.Markdown(CHAT_LEGEND)
            chat_preview = gr.HTML(EMPTY_CHAT_PREVIEW, max_height=620, padding=True, container=True)
        gr.Markdown(TEMPLATE_HELP)
        with gr.Row(equal_height=False):
            with gr.Column():
                prompt_template = gr.Textbox(label="Prompt template", lines=8, max_lines=20)
                input_template = gr.Textbox(label="Input template", lines=6, max_lines=20)
                completion_template = gr.Textbox(label="Completion template", lines=2, max_lines=8)
            with gr.Column():
                gr.Markdown("**Preview on the first rows** (highlighted: the completion)")
                preview = gr.HTML(EMPTY_PREVIEW, max_height=620, padding=True, container=True)
        with gr.Row():
            name = gr.Textbox(label="Prompt name")
            description = gr.Textbox(label="Description", scale=2)
            save_button = gr.Button("Save prompt", variant="primary", scale=0, min_width=160)
        save_status = gr.Markdown()
        table = gr.Dataframe(
            label="Prompts (click a row to load it into the editor)",
            interactive=False,
            wrap=True,
            max_height=360,
            column_widths=COLUMN_WIDTHS,
        )
        chosen = Picker(label="Prompt", choices=[], value=None)
        with gr.Accordion("Remove the chosen prompt", open=False):
            confirm = gr.Checkbox(label="Yes, remove this prompt (adapters trained with it keep no prompt)")
            remove_button = gr.Button("Remove prompt", variant="stop")
            remove_status = gr.Markdown()

    refresh = bind(list_prompts, services)
    outputs = [table, chosen, dataset]
    on_show(tab, refresh, outputs, api_name="list_prompts")
    on_show(tab, bind(list_chat_models, services), [chat_model], inputs=[chat_model])
    show_chat = bind(preview_chat, services)
    dataset.change(bind(chat_mode, services), dataset, [chat_block, is_chat], show_progress="hidden", api_visibility=PRIVATE).then(
        show_chat,
        [dataset, chat_model, is_chat],
        chat_preview,
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    chat_model.change(show_chat, [dataset, chat_model, is_chat], chat_preview, show_progress="hidden", api_visibility=PRIVATE)
    templates = [prompt_template, input_template, completion_template]
    generate_button.click(bind(generate_templates, services), dataset, [*templates, generated_note], api_name="generate_templates")
    gr.on(
        [dataset.change, *(t.change for t in templates)],
        bind(preview_prompt, services),
        [dataset, *templates],
        preview,
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="preview_prompt",
    )
    save_button.click(
        bind(save_prompt, services),
        [name, dataset, *templates, description],
        save_status,
        api_name="save_prompt",
    ).success(refresh, outputs=outputs, show_progress="hidden", api_visibility=PRIVATE)
    table.select(clicked_id, outputs=chosen, show_progress="hidden", api_visibility=PRIVATE)
    chosen.change(bind(show_prompt, services), chosen, [dataset, *templates], api_name="show_prompt")
    remove_button.click(
        bind(remove_prompt, services), [chosen, confirm], [remove_status, chosen, confirm], api_name="remove_prompt"
    ).success(
        refresh,
        outputs=outputs,
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
