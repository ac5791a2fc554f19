"""Compare: one prompt, a base model and up to four of its adapters, answers streaming side by side; blind A/B votes.

Generation runs in the base model's inference worker (a run the supervisor owns), never here.
The Generate handler is a generator for ONE answer only: it follows the response file until every
output is finished (seconds), then ends; the worker's own status is polled with a timer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ftapp.compare import MAX_ADAPTERS, TIE, CompareRequest, CompareSnapshot
from ftapp.errors import FtappError
from ftapp.services import Services
from ui.choices import Picker
from ui.compare_text import status_text, vote_text, worker_text
from ui.errors import error_message, shows_errors
from ui.stop_buttons import stop_button
from ui.wiring import PRIVATE, bind

MAX_OUTPUTS = MAX_ADAPTERS + 1  # the adapters and the base model
WORKER_POLL_S = 3.0
INTRO = (
    "Pick a base model and up to four of its adapters. One prompt is answered by all of them at once, "
    "streaming side by side. **Blind A/B** hides which output is which until you vote."
)


def _keep(choices: list[tuple[str, str]], selected: str | None) -> str | None:
    values = [value for _, value in choices]
    return selected if selected in values else (values[0] if values else None)


def _model_name(services: Services, model_id: str | None) -> str | None:
    return next((m.name for m in services.models.list() if m.id == model_id), None) if model_id else None


@shows_errors
def show_choices(
    services: Services, model_id: str | None = None, dataset_id: str | None = None, adapter_ids: list[str] | None = None
) -> tuple[Any, ...]:
    """Models, their adapters and datasets when the tab opens, keeping what the user chose."""
    models = [(m.name, m.id) for m in services.models.list()]
    model_id = _keep(models, model_id)
    datasets = [(d.name, d.id) for d in services.datasets.list()]
    dataset_id = _keep(datasets, dataset_id)
    return (
        gr.Dropdown(choices=models, value=model_id),
        adapter_choices(services, model_id, adapter_ids),
        gr.Dropdown(choices=datasets, value=dataset_id),
        template_choices(services, dataset_id),
        worker_status(services, model_id),
    )


def adapter_choices(services: Services, model_id: str | None, selected: list[str] | None = None) -> gr.Dropdown:
    """Only the adapters trained on this base model: the worker can carry no others."""
    choices = [(a.name, a.id) for a in services.comparisons.adapters_for(model_id or "")]
    ids = {value for _, value in choices}
    label = f"Adapters (up to {MAX_ADAPTERS}, trained on this model)" if choices else "Adapters (none trained on this model yet)"
    return gr.Dropdown(choices=choices, value=[a for a in selected or [] if a in ids], label=label)


@shows_errors
def pick_model(services: Services, model_id: str | None) -> tuple[gr.Dropdown, str]:
    return adapter_choices(services, model_id), worker_status(services, model_id)


@shows_errors
def template_choices(services: Services, dataset_id: str | None) -> gr.Dropdown:
    """The dataset's prompts, the first chosen: choices and value together, so the page never holds a prompt of
    another dataset (a template belongs to one dataset: none of the previous one's can be kept)."""
    choices = [(p.name, p.id) for p in services.prompts.list(dataset_id)] if dataset_id else []
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)


@shows_errors
def sample_row(services: Services, dataset_id: str | None, prompt_id: str | None, row: float | None) -> str:
    """A dataset row rendered through a prompt's input template, as a prompt to compare on."""
    row_index = int(row) if row is not None and float(row).is_integer() else row
    return services.comparisons.sample_prompt(dataset_id or "", prompt_id or "", row_index)  # type: ignore[arg-type]


def worker_status(services: Services, model_id: str | None) -> str:
    worker = services.comparisons.worker(model_id) if model_id else None
    return worker_text(worker, _model_name(services, model_id))


def worker_panel(services: Services, model_id: str | None) -> tuple[str, gr.Button]:
    """The worker line, and the stop button live only while there is a worker to stop."""
    worker = services.comparisons.worker(model_id) if model_id else None
    return worker_text(worker, _model_name(services, model_id)), stop_button(worker is not None)


@shows_errors
def stop_worker(services: Services, model_id: str | None) -> tuple[str, str]:
    """Stop the base model's inference worker, which frees its memory."""
    if not model_id:
        raise gr.Error("Choose a base model first.")
    stopped = services.comparisons.stop_worker(model_id)
    note = "Stopping the worker: its memory is freed in a moment." if stopped else "No worker was running for this model."
    return note, worker_status(services, model_id)


def streams_errors(handler: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``shows_errors`` for a generator handler: its errors surface while it is iterated, not when it is called."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from handler(*args, **kwargs)
        except FtappError as error:
            raise gr.Error(error_message(error), print_exception=False) from error

    return wrapper


def compare_request(
    model_id: str | None,
    adapter_ids: list[str] | None,
    include_base: bool,
    prompt: str,
    chat: bool,
    max_new_tokens: float | None,
    do_sample: bool,
    temperature: float,
    top_p: float,
    top_k: float | None,
    repetition_penalty: float | None,
    seed: float | None,
    blind: bool,
) -> CompareRequest:
    """The widgets' values as one typed request; the service's rules judge them."""
    generation: dict[str, Any] = {
        "do_sample": bool(do_sample),
        "max_new_tokens": _whole(max_new_tokens, 128),
        "temperature": float(temperature),
        "top_p": float(top_p),
        "top_k": _whole(top_k, 50),
        "repetition_penalty": float(repetition_penalty if repetition_penalty is not None else 1.0),
    }
    return CompareRequest(
        model_id=model_id or "",
        adapter_ids=tuple(adapter_ids or ()),
        include_base=bool(include_base),
        prompt=prompt or "",
        chat=bool(chat),
        generation=generation,
        seed=_whole(seed, 0),
        blind=bool(blind),
    )


def _whole(value: float | None, default: int) -> Any:
    if value is None:
        return default
    return int(value) if float(value).is_integer() else value  # a fraction stays, for the rules to refuse


def _outputs(snapshot: CompareSnapshot, first: bool) -> list[Any]:
    """Columns (shown on the first update only), textboxes, and vote buttons for one snapshot."""
    labels, count, skip = snapshot.comparison.labels, len(snapshot.texts), gr.skip()
    columns = [gr.Column(visible=i < count) for i in range(MAX_OUTPUTS)] if first else [skip] * MAX_OUTPUTS
    boxes = [gr.Textbox(value=snapshot.texts[i], label=labels[i]) if i < count else skip for i in range(MAX_OUTPUTS)]
    can_vote = snapshot.done and count >= 2
    buttons = [gr.Button(value=f"{labels[i]} is better", interactive=can_vote) if i < count else skip for i in range(MAX_OUTPUTS)]
    return [*columns, *boxes, *buttons, gr.Button(interactive=can_vote)]


@streams_errors
def generate(
    services: Services,
    model_id: str | None,
    adapter_ids: list[str] | None,
    include_base: bool,
    prompt: str,
    chat: bool,
    max_new_tokens: float | None,
    do_sample: bool,
    temperature: float,
    top_p: float,
    top_k: float | None,
    repetition_penalty: float | None,
    seed: float | None,
    blind: bool,
) -> Iterator[list[Any]]:
    """Answer one prompt with the base model and its adapters side by side, streaming.

    Outputs are state, status, vote result, vote row, then ``_outputs``.
    """
    request = compare_request(
        model_id,
        adapter_ids,
        include_base,
        prompt,
        chat,
        max_new_tokens,
        do_sample,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        seed,
        blind,
    )
    first = True
    for snapshot in services.comparisons.generate(request):
        skip = gr.skip()
        yield [snapshot, status_text(snapshot), "" if first else skip, gr.Row(visible=True) if first else skip, *_outputs(snapshot, first)]
        first = False


@shows_errors
def cast_vote(services: Services, index: int | None, snapshot: CompareSnapshot | None) -> list[Any]:
    """Vote on the last comparison (``index`` None: a tie), then reveal the names behind blind labels and close voting."""
    if snapshot is None:
        raise gr.Error("Generate first, then vote.")
    labels = snapshot.comparison.labels
    vote = services.comparisons.vote(snapshot, TIE if index is None else labels[index])
    names = [c.name for c in snapshot.comparison.candidates]
    boxes = [
        gr.Textbox(label=f"{labels[i]} = {names[i]}" if snapshot.comparison.blind else labels[i]) if i < len(labels) else gr.skip()
        for i in range(MAX_OUTPUTS)
    ]
    buttons = [gr.Button(interactive=False) for _ in range(MAX_OUTPUTS + 1)]
    return [vote_text(vote), *boxes, *buttons]


def _vote_handler(services: Services, index: int | None) -> Callable[[CompareSnapshot | None], list[Any]]:
    def vote(services: Services, snapshot: CompareSnapshot | None) -> list[Any]:
        return cast_vote(services, index, snapshot)

    vote.__name__, vote.__doc__ = f"vote_{'tie' if index is None else index}", cast_vote.__doc__
    return bind(vote, services)  # each vote with its visitor's services


def render(services: Services) -> None:
    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = Picker(label="Base model", choices=[], value=None, elem_id="compare-model", scale=2)
            adapters = Picker(
                label="Adapters", choices=[], value=[], multiselect=True, max_choices=MAX_ADAPTERS, elem_id="compare-adapters", scale=4
            )
            with gr.Column(scale=2, min_width=220):
                include_base = gr.Checkbox(label="Include the base model", value=True, elem_id="compare-include-base")
                blind = gr.Checkbox(label="Blind A/B: hide which output is which until I vote", value=False, elem_id="compare-blind")
        prompt = gr.Textbox(
            label="Prompt",
            lines=4,
            max_lines=12,
            elem_id="compare-prompt",
            placeholder="Type a prompt, or take one from a dataset row below.",
        )
        with gr.Accordion("Take the prompt from a dataset row (rendered through a prompt's input template)", open=False):
            with gr.Row():
                dataset = Picker(label="Dataset", choices=[], value=None, elem_id="compare-dataset")
                template = Picker(label="Prompt template", choices=[], value=None, elem_id="compare-template")
                row = gr.Number(label="Row", value=0, precision=0, minimum=0, elem_id="compare-row")
                sample = gr.Button("Use this row", elem_id="compare-sample", scale=0, min_width=140)
            chat = gr.Checkbox(label="Send as a chat turn (through the tokenizer's chat template)", value=False, elem_id="compare-chat")
        with gr.Row(equal_height=True):
            max_new_tokens = gr.Number(
                label="Max new tokens", value=128, precision=0, minimum=1, elem_id="compare-max-new-tokens", min_width=120
            )
            do_sample = gr.Checkbox(label="Sample (off: greedy)", value=False, elem_id="compare-do-sample", min_width=120)
            temperature = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="Temperature", elem_id="compare-temperature")
            top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top p", elem_id="compare-top-p")
            top_k = gr.Number(label="Top k", value=50, precision=0, minimum=0, elem_id="compare-top-k", min_width=90)
            repetition_penalty = gr.Number(
                label="Repetition penalty", value=1.0, minimum=0.01, step=0.05, elem_id="compare-repetition-penalty", min_width=120
            )
            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="compare-seed", min_width=90)
        generate_button = gr.Button("Generate", variant="primary", elem_id="compare-generate")
        status = gr.Markdown(elem_id="compare-status")
        columns, boxes, votes = [], [], []
        with gr.Row():
            for i in range(MAX_OUTPUTS):
                with gr.Column(visible=False, min_width=200) as column:
                    # One fixed height: side by side, answers line up; a long one scrolls (to its end while streaming).
                    boxes.append(
                        gr.Textbox(
                            label=f"Output {i + 1}",
                            lines=14,
                            max_lines=14,
                            interactive=False,
                            autoscroll=True,
                            elem_id=f"compare-output-{i}",
                        )
                    )
                    votes.append(gr.Button(f"Output {i + 1} is better", interactive=False, size="sm", elem_id=f"compare-vote-{i}"))
                columns.append(column)
        with gr.Row(equal_height=True, visible=False) as vote_row:  # shown with the first outputs
            tie = gr.Button("Tie", interactive=False, size="sm", elem_id="compare-vote-tie", scale=0, min_width=120)
            vote_result = gr.Markdown(elem_id="compare-vote-result")
        with gr.Row(equal_height=True):
            worker = gr.Markdown(elem_id="compare-worker")
            stop = gr.Button(
                "Stop worker", variant="secondary", size="sm", interactive=False, elem_id="compare-stop-worker", scale=0, min_width=150
            )
            stop_result = gr.Markdown(elem_id="compare-stop-result")
        shown = gr.State(None)  # the last snapshot: what a vote is about (kept on the server, never in the page)
        timer = gr.Timer(WORKER_POLL_S)

    choices = [model, adapters, dataset, template, worker]
    # Not ui.wiring.on_show: with inputs, gr.on(None) also fires on every change of them, and
    # choosing a dataset would then re-run this and drop the adapters already chosen.
    gr.on(
        None,
        bind(show_choices, services),
        outputs=choices,
        show_progress="hidden",  # page load only
        api_visibility=PRIVATE,
    )
    tab.select(bind(show_choices, services), [model, dataset, adapters], choices, show_progress="hidden", api_visibility=PRIVATE)
    model.input(bind(pick_model, services), model, [adapters, worker], show_progress="hidden", api_visibility=PRIVATE)
    # The dataset alone goes in: the template's value is the previous dataset's, and a picker fires input twice
    # (choice, then blur), so the second event would carry it after the first reply replaced the choices.
    dataset.input(bind(template_choices, services), dataset, template, show_progress="hidden", api_visibility=PRIVATE)
    sample.click(bind(sample_row, services), [dataset, template, row], prompt, api_name="sample_row")
    settings = [max_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty, seed]
    generate_button.click(
        bind(generate, services),
        [model, adapters, include_base, prompt, chat, *settings, blind],
        [shown, status, vote_result, vote_row, *columns, *boxes, *votes, tie],
        show_progress="minimal",
        api_name="generate_answers",
    ).then(bind(worker_panel, services), model, [worker, stop], show_progress="hidden", api_visibility=PRIVATE)
    vote_outputs = [vote_result, *boxes, *votes, tie]
    for index, button in enumerate(votes):
        button.click(_vote_handler(services, index), shown, vote_outputs, api_name=f"vote_{index}")
    tie.click(_vote_handler(services, None), shown, vote_outputs, api_name="vote_tie")
    stop.click(bind(stop_worker, services), model, [stop_result, worker], api_name="stop_worker").then(
        bind(worker_panel, services), model, [worker, stop], show_progress="hidden", api_visibility=PRIVATE
    )
    timer.tick(bind(worker_panel, services), model, [worker, stop], show_progress="hidden", concurrency_limit=None, api_visibility=PRIVATE)
