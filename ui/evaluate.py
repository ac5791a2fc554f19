"""Evaluate: score a base model and its adapters side by side on held-out rows, live as answers arrive."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftapp.evaluation import Combination, EvaluationRequest
from ftapp.prompts import GenerationSettings, help_text
from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ui.errors import shows_errors
from ui.evaluation_view import aggregate_html, rows_html
from ui.run_text import FINISHED, progress_bar, progress_fraction, status_label
from ui.train_form import device_choices
from ui.train_method import REWARD_COLUMNS, reward_rows, rewards_from_table
from ui.wiring import bind, on_show, run_picker

POLL_S = 1.0
GENERATION_HELP = help_text(GenerationSettings)
NOTHING_CHOSEN = "No evaluation chosen. Pick a dataset, a prompt, a model and its adapters, then **Evaluate**."
ROWS_HELP = ("By default the rows each adapter's training run held out (its validation split), so no adapter is scored "
             "on rows it trained on; without such an adapter, a seeded fraction of the dataset.")
REWARDS_HELP = ("Score every generated answer against its row's reference with the ticked rewards, as GRPO scores them: "
                "the table gets `reward` (their weighted sum) and `reward/<kind>`. None ticked: the rewards of the "
                "adapters' GRPO run, when they come from one. Preference datasets are scored by likelihood instead.")


def _keep(choices: list[tuple[str, str]], selected: Any, multi: bool = False) -> Any:
    values = [value for _, value in choices]
    if multi:
        return [v for v in (selected or []) if v in values]
    return selected if selected in values else (values[0] if values else None)


@shows_errors
def refresh_form(services: Services, dataset_id: str | None, prompt_id: str | None, model_id: str | None,
                 adapter_ids: list[str] | None, devices: str | None) -> tuple[gr.Dropdown, ...]:
    datasets = [(f"{d.name} ({d.num_rows if d.num_rows is not None else '?'} rows)", d.id) for d in services.datasets.list()]
    dataset_id = _keep(datasets, dataset_id)
    prompts = [(p.name, p.id) for p in services.prompts.list() if p.dataset_id == dataset_id]
    models = [(m.name, m.id) for m in services.models.list()]
    model_id = _keep(models, model_id)
    adapters = [(a.name, a.id) for a in services.adapters.list() if a.model_id == model_id]
    machine = device_choices(services.machine())
    return (
        gr.Dropdown(choices=datasets, value=dataset_id),
        gr.Dropdown(choices=prompts, value=_keep(prompts, prompt_id)),
        gr.Dropdown(choices=models, value=model_id),
        gr.Dropdown(choices=adapters, value=_keep(adapters, adapter_ids, multi=True)),
        gr.Dropdown(choices=machine, value=_keep(machine, devices)),
    )


def evaluation_request(dataset_id: str | None, prompt_id: str | None, model_id: str | None, adapter_ids: list[str] | None,
                       include_base: bool, fraction: float, max_rows: float | None, max_new_tokens: float,
                       batch_size: float, devices: str | None, rewards: Any = None) -> EvaluationRequest:
    combos = ([Combination(model_id or "")] if include_base else []) + [Combination(model_id or "", a) for a in adapter_ids or []]
    return EvaluationRequest(
        dataset_id=dataset_id or "", prompt_id=prompt_id or "", combinations=tuple(combos), gpus=devices or "auto",
        generation={"max_new_tokens": int(max_new_tokens)}, dataset_fraction=float(fraction),
        max_rows=int(max_rows) if max_rows else None, batch_size=int(batch_size),
        rewards=rewards_from_table(rewards) or None,  # none ticked: the adapters' GRPO rewards
    )


@shows_errors
def start_evaluation(services: Services, *form: Any) -> tuple[str, gr.Dropdown]:
    run = services.evaluations.submit(evaluation_request(*form))
    return f"Queued evaluation `{run.id[:8]}`: {run.name}.", list_evaluations(services, run.id)


def list_evaluations(services: Services, selected: str | None = None) -> gr.Dropdown:
    return run_picker(services.evaluations.list(), selected)


def status_markdown(run: Any, answers: int, expected: int) -> str:
    fraction = answers / expected if expected else progress_fraction(run)
    line = f"`{progress_bar(fraction)}` {answers}/{expected} answers"
    if run.status == RunStatus.FAILED:
        summary = (run.error_text or "").partition("\n--- log tail ---\n")[0]
        line += f"\n\n**Failed ({run.error_cause or 'unknown'}):**\n`````text\n{summary.strip()}\n`````"
    return f"### {status_label(run.status)} · {run.name}\n\n{line}  \nRun id `{run.id}` · see the Runs tab for its log"


def signature(run: Any, only_disagreements: bool) -> str:
    return f"{run.id}|{run.status}|{run.events_offset}|{only_disagreements}"


@shows_errors
def show_evaluation(services: Services, run_id: str | None, only_disagreements: bool) -> tuple[str, str, str, str]:
    if not run_id:
        return NOTHING_CHOSEN, "", "", ""
    results = services.evaluations.results(run_id)
    return (status_markdown(results.run, results.answers, results.expected), aggregate_html(results),
            rows_html(results, only_disagreements), signature(results.run, only_disagreements))


@shows_errors
def poll_evaluation(services: Services, run_id: str | None, shown: str | None, only_disagreements: bool) -> tuple[Any, ...]:
    """The timer's tick: redraw only when new events were stored; a finished run on screen costs nothing.

    Outputs: the view, then the picker (whose labels carry the status, so redrawn when it changes).
    """
    skip = (gr.skip(),) * 5
    if not run_id:
        return skip
    parts = (shown or "").split("|")
    if len(parts) == 4 and parts[0] == run_id and parts[1] in FINISHED:
        return skip
    run = services.runs.get(run_id)
    if signature(run, only_disagreements) == shown:
        return skip
    pick = list_evaluations(services, run_id) if parts[0] != run_id or parts[1] != run.status else gr.skip()
    return (*show_evaluation(services, run_id, only_disagreements), pick)


def render(services: Services) -> None:
    with gr.Tab("Evaluate", id="evaluate") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                dataset = gr.Dropdown(label="Dataset", choices=[], elem_id="eval-dataset")
                prompt = gr.Dropdown(label="Prompt (input → reference answer)", choices=[], elem_id="eval-prompt",
                                     info="Optional for conversational and preference (chosen/rejected) datasets.")
                model = gr.Dropdown(label="Base model", choices=[], elem_id="eval-model")
                adapters = gr.Dropdown(label="Adapters (trained on this model)", choices=[], value=[], multiselect=True,
                                       elem_id="eval-adapters")
                include_base = gr.Checkbox(label="Include the base model alone as the baseline (#1)", value=True,
                                           elem_id="eval-include-base")
                with gr.Accordion("Rows and generation", open=False):
                    gr.Markdown(ROWS_HELP)
                    fraction = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="Fraction of rows (when no held-out split applies)",
                                         elem_id="eval-fraction")
                    max_rows = gr.Number(label="At most this many rows (empty: all)", value=None, precision=0, elem_id="eval-max-rows")
                    max_new_tokens = gr.Number(label="Max new tokens", value=32, precision=0, minimum=1,
                                               info=GENERATION_HELP["max_new_tokens"], elem_id="eval-max-new-tokens")
                    batch_size = gr.Number(label="Rows per batch", value=16, precision=0, minimum=1, elem_id="eval-batch-size",
                                           info="Each row is answered by every combination of a base model in one batch.")
                    devices = gr.Dropdown(label="Device", choices=[], elem_id="eval-devices")
                with gr.Accordion("Rewards (GRPO)", open=False):
                    gr.Markdown(REWARDS_HELP)
                    rewards = gr.Dataframe(
                        value=[[False, *row[1:]] for row in reward_rows(services.settings.allows_custom_code)],
                        headers=REWARD_COLUMNS, datatype=["bool", "str", "number", "str", "str"], type="array",
                        interactive=True, wrap=True, static_columns=[1, 4], elem_id="eval-rewards", label="Rewards")
                start = gr.Button("▶ Evaluate", variant="primary", elem_id="eval-start")
                started = gr.Markdown(elem_id="eval-started")
            with gr.Column(scale=3):
                pick = gr.Dropdown(label="Evaluation (newest first)", choices=[], elem_id="eval-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="eval-status")
                aggregate = gr.HTML(elem_id="eval-aggregate")
                only_disagreements = gr.Checkbox(label="Only rows where the combinations answer differently", value=False,
                                                 elem_id="eval-disagreements")
                rows = gr.HTML(elem_id="eval-rows")
        shown = gr.State("")
        timer = gr.Timer(POLL_S)

    form = [dataset, prompt, model, adapters, devices]
    refresh = bind(refresh_form, services)
    on_show(tab, refresh, form, inputs=form)
    on_show(tab, lambda selected: list_evaluations(services, selected), [pick], inputs=[pick])
    dataset.change(refresh, form, form, show_progress="hidden")
    model.change(refresh, form, form, show_progress="hidden")
    view = [status, aggregate, rows, shown]
    start.click(bind(start_evaluation, services),
                [dataset, prompt, model, adapters, include_base, fraction, max_rows, max_new_tokens, batch_size, devices,
                 rewards],
                [started, pick])
    pick.change(bind(show_evaluation, services), [pick, only_disagreements], view, show_progress="hidden")
    only_disagreements.change(bind(show_evaluation, services), [pick, only_disagreements], view, show_progress="hidden")
    timer.tick(bind(poll_evaluation, services), [pick, shown, only_disagreements], [*view, pick],
               show_progress="hidden", concurrency_limit=None)
