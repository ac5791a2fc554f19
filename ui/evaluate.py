"""Evaluate: score a base model and its adapters side by side on held-out rows, live as answers arrive."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from ftapp.evaluation import DEFAULT_RUBRIC, Combination, EvaluationRequest, JudgeRequest, parse_task_names
from ftapp.prompts import GenerationSettings, help_text
from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.evaluation_view import aggregate_html, rows_html
from ui.polling import Drawn, relabels, settled
from ui.run_text import failure_lines, progress_bar, progress_fraction, status_label
from ui.train_form import device_choices
from ui.train_method import REWARD_COLUMNS, reward_rows, rewards_from_table
from ui.wiring import PRIVATE, bind, bind_request, named_inputs, on_show, run_picker, unchanged

POLL_S = 1.0
GENERATION_HELP = help_text(GenerationSettings)
NOTHING_CHOSEN = "No evaluation chosen. Pick a dataset, a prompt, a model and its adapters, then **Evaluate**."
ROWS_HELP = (
    "By default the rows each adapter's training run held out (its validation split), so no adapter is scored "
    "on rows it trained on; without such an adapter, a seeded fraction of the dataset."
)
BENCHMARKS_HELP = (
    "Standard benchmarks through [lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness), "
    "which builds the prompts and scores the answers, so the numbers compare with published ones. Every "
    "combination of the base model answers in the same batches. Tasks whose data is on the Hub need the network "
    "once; a local folder of task YAML files works offline. The dataset is optional when benchmarks are given."
)
JUDGE_HELP = (
    "A model compares each combination's answer with #1's, row by row, in both orders (A/B, then B/A) so that a "
    "preference for one position cancels out. Its win/tie/loss rates join the table, its verdicts the rows; blind "
    "votes of the Compare tab between the same two count in win_rate too."
)
REWARDS_HELP = (
    "Score every generated answer against its row's reference with the ticked rewards, as GRPO scores them: "
    "the table gets `reward` (their weighted sum) and `reward/<kind>`. None ticked: the rewards of the "
    "adapters' GRPO run, when they come from one. Preference datasets are scored by likelihood instead."
)


class Choices(NamedTuple):
    """The pickers filled from the database, in one order: inputs and outputs of ``refresh_form``."""

    dataset: Any
    prompt: Any
    model: Any
    adapters: Any
    devices: Any


class EvaluationView(NamedTuple):
    """The chosen evaluation: its progress, the scores per combination and the answers row by row."""

    status: Any
    aggregate: Any
    rows: Any
    drawn: Any  # a ui.polling.Drawn, kept in a gr.State for the timer


def _keep(choices: list[tuple[str, str]], selected: Any, multi: bool = False) -> Any:
    values = [value for _, value in choices]
    if multi:
        return [v for v in (selected or []) if v in values]
    return selected if selected in values else (values[0] if values else None)


@shows_errors
def refresh_form(
    services: Services,
    dataset_id: str | None,
    prompt_id: str | None,
    model_id: str | None,
    adapter_ids: list[str] | None,
    devices: str | None,
) -> Choices:
    datasets = [(f"{d.name} ({d.num_rows if d.num_rows is not None else '?'} rows)", d.id) for d in services.datasets.list()]
    dataset_id = _keep(datasets, dataset_id)
    prompts = [(p.name, p.id) for p in services.prompts.list() if p.dataset_id == dataset_id]
    models = [(m.name, m.id) for m in services.models.list()]
    model_id = _keep(models, model_id)
    adapters = [(a.name, a.id) for a in services.adapters.list() if a.model_id == model_id]
    machine = device_choices(services.machine())
    return Choices(
        dataset=gr.Dropdown(choices=datasets, value=dataset_id),
        prompt=gr.Dropdown(choices=prompts, value=_keep(prompts, prompt_id)),
        model=gr.Dropdown(choices=models, value=model_id),
        adapters=gr.Dropdown(choices=adapters, value=_keep(adapters, adapter_ids, multi=True)),
        devices=gr.Dropdown(choices=machine, value=_keep(machine, devices)),
    )


def evaluation_request(
    dataset_id: str | None,
    prompt_id: str | None,
    model_id: str | None,
    adapter_ids: list[str] | None,
    include_base: bool,
    fraction: float,
    max_rows: float | None,
    max_new_tokens: float,
    batch_size: float,
    devices: str | None,
    rewards: Any = None,
    benchmarks: str | None = None,
    benchmark_dir: str | None = None,
    benchmark_limit: float | None = None,
    judge_model_id: str | None = None,
    judge_url: str | None = None,
    judge_api_model: str | None = None,
    judge_key: str | None = None,
    judge_rubric: str | None = None,
) -> EvaluationRequest:
    combos = ([Combination(model_id or "")] if include_base else []) + [Combination(model_id or "", a) for a in adapter_ids or []]
    judge = (
        JudgeRequest(
            model_id=judge_model_id or None,
            url=(judge_url or "").strip() or None,
            api_model=judge_api_model or None,
            api_key_name=(judge_key or "").strip() or None,
            rubric=judge_rubric,
        )
        if judge_model_id or judge_url
        else None
    )
    return EvaluationRequest(
        dataset_id=dataset_id or "",
        prompt_id=prompt_id or "",
        combinations=tuple(combos),
        gpus=devices or "auto",
        generation={"max_new_tokens": int(max_new_tokens)},
        dataset_fraction=float(fraction),
        max_rows=int(max_rows) if max_rows else None,  # 0 (or cleared): all rows, as the label says; below 0 EV-010 refuses
        batch_size=int(batch_size),
        rewards=rewards_from_table(rewards) or None,  # none ticked: the adapters' GRPO rewards
        benchmarks=parse_task_names(benchmarks or ""),
        benchmark_dir=(benchmark_dir or "").strip() or None,
        benchmark_limit=int(benchmark_limit) if benchmark_limit else None,  # 0 (or cleared): every document
        judge=judge,
    )


@shows_errors
def start_evaluation(services: Services, request: EvaluationRequest) -> tuple[str, gr.Dropdown]:
    """Queue an evaluation of the base model and adapters on held-out rows; returns the evaluations, it chosen."""
    run = services.evaluations.submit(request)
    return f"Queued evaluation `{run.id[:8]}`: {run.name}.", list_evaluations(services, run.id)


def judge_models(services: Services, selected: str | None) -> gr.Dropdown:
    choices = [("(no judge)", "")] + [(m.name, m.id) for m in services.models.list()]
    return gr.Dropdown(choices=choices, value=_keep(choices, selected))


def list_evaluations(services: Services, selected: str | None = None) -> gr.Dropdown:
    """The evaluations, newest first, as the picker's choices (label, run id)."""
    return run_picker(services.evaluations.list(), selected)


def status_markdown(run: Any, answers: int, expected: int) -> str:
    fraction = answers / expected if expected else progress_fraction(run)
    line = f"`{progress_bar(fraction)}` {answers}/{expected} answers"
    if run.status == RunStatus.FAILED:
        line += "\n\n" + "\n".join(failure_lines(run))
    return f"### {status_label(run.status)} · {run.name}\n\n{line}  \nRun id `{run.id}` · see the Runs tab for its log"


def drawn(run: Any, only_disagreements: bool) -> Drawn:
    return Drawn(run.id, run.status, (run.events_offset, bool(only_disagreements)))


@shows_errors
def show_evaluation(services: Services, run_id: str | None, only_disagreements: bool) -> EvaluationView:
    """One evaluation: progress, scores per combination (HTML) and the answers row by row (HTML)."""
    if not run_id:
        return EvaluationView(status=NOTHING_CHOSEN, aggregate="", rows="", drawn=None)
    results = services.evaluations.results(run_id)
    return EvaluationView(
        status=status_markdown(results.run, results.answers, results.expected),
        aggregate=aggregate_html(results),
        rows=rows_html(results, only_disagreements),
        drawn=drawn(results.run, only_disagreements),
    )


@shows_errors
def poll_evaluation(services: Services, run_id: str | None, shown: Drawn | None, only_disagreements: bool) -> tuple[Any, ...]:
    """The timer's tick: redraw only when new events were stored; a finished run on screen costs nothing.

    Outputs: the ``EvaluationView``, then the picker (whose labels carry the status, so redrawn when it changes).
    """
    if settled(shown, run_id):
        return (*unchanged(EvaluationView), gr.skip())
    now = drawn(services.runs.get(run_id), only_disagreements)
    if now == shown:
        return (*unchanged(EvaluationView), gr.skip())
    pick = list_evaluations(services, run_id) if relabels(shown, now) else gr.skip()
    return (*show_evaluation(services, run_id, only_disagreements), pick)


@shows_errors
def store_api_key(services: Services, name: str | None, key: str | None) -> tuple[str, str]:
    """Store a judge endpoint's API key under ``name`` (the secrets store, 0600); the key box is emptied and the key
    is never shown again. Outputs: the note, the key box."""
    name = (name or "").strip()
    services.api_keys.store(name, key or "")
    return f"Stored the API key **{name}** on this machine. Stored keys: {', '.join(services.api_keys.names())}.", ""


def render(services: Services) -> None:
    caps = services.visitor.caps if services.visitor else None
    all_rows = f"{caps.max_eval_rows}, the demo's most" if caps else "all"
    with gr.Tab("Evaluate", id="evaluate") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                dataset = Picker(label="Dataset", choices=[], elem_id="eval-dataset")
                prompt = Picker(
                    label="Prompt (input → reference answer)",
                    choices=[],
                    elem_id="eval-prompt",
                    info="Optional for conversational and preference (chosen/rejected) datasets.",
                )
                model = Picker(label="Base model", choices=[], elem_id="eval-model")
                adapters = Picker(label="Adapters (trained on this model)", choices=[], value=[], multiselect=True, elem_id="eval-adapters")
                include_base = gr.Checkbox(
                    label="Include the base model alone as the baseline (#1)", value=True, elem_id="eval-include-base"
                )
                with gr.Accordion("Rows and generation", open=False):
                    gr.Markdown(ROWS_HELP)
                    fraction = gr.Slider(
                        0.01, 1.0, value=1.0, step=0.01, label="Fraction of rows (when no held-out split applies)", elem_id="eval-fraction"
                    )
                    # 0, not empty, means all: gradio's number field shows an empty value as 0 whatever its placeholder.
                    max_rows = gr.Number(label=f"At most this many rows (0: {all_rows})", value=0, precision=0, elem_id="eval-max-rows")
                    max_new_tokens = gr.Number(
                        label="Max new tokens",
                        value=32,
                        precision=0,
                        minimum=1,
                        info=GENERATION_HELP["max_new_tokens"],
                        elem_id="eval-max-new-tokens",
                    )
                    batch_size = gr.Number(
                        label="Rows per batch",
                        value=16,
                        precision=0,
                        minimum=1,
                        elem_id="eval-batch-size",
                        info="Each row is answered by every combination of a base model in one batch.",
                    )
                    devices = Picker(label="Device", choices=[], elem_id="eval-devices")
                with gr.Accordion("Rewards (GRPO)", open=False):
                    gr.Markdown(REWARDS_HELP)
                    rewards = gr.Dataframe(
                        value=[[False, *row[1:]] for row in reward_rows(services.settings.allows_custom_code)],
                        headers=REWARD_COLUMNS,
                        datatype=["bool", "str", "number", "str", "str"],
                        type="array",
                        interactive=True,
                        wrap=True,
                        static_columns=[1, 4],
                        elem_id="eval-rewards",
                        label="Rewards",
                    )
                with gr.Accordion("Benchmarks (lm-evaluation-harness)", open=False):
                    gr.Markdown(BENCHMARKS_HELP)
                    benchmarks = gr.Textbox(label="lm-eval tasks", placeholder="mmlu, gsm8k, arc_easy", elem_id="eval-benchmarks")
                    benchmark_dir = gr.Textbox(label="Local task folder (lm-eval YAML; empty: none)", elem_id="eval-benchmark-dir")
                    benchmark_limit = gr.Number(
                        label="At most this many documents per task (0: all)", value=0, precision=0, elem_id="eval-benchmark-limit"
                    )
                with gr.Accordion("LLM judge", open=False):
                    gr.Markdown(JUDGE_HELP)
                    judge_model = Picker(label="Judge model", choices=[("(no judge)", "")], value="", elem_id="eval-judge-model")
                    with gr.Row():
                        judge_url = gr.Textbox(
                            label="…or an OpenAI-compatible URL", placeholder="http://127.0.0.1:8000/v1", elem_id="eval-judge-url"
                        )
                        judge_api_model = gr.Textbox(label="Endpoint's model name", elem_id="eval-judge-api-model")
                        judge_key = gr.Textbox(
                            label="API key name (secrets store, or an environment variable ending in _API_KEY)", elem_id="eval-judge-key"
                        )
                    # The host's keys are no visitor's to set (DM-007): the demo has no URL judge either.
                    with gr.Row(equal_height=True, visible=not services.settings.demo):
                        judge_key_value = gr.Textbox(
                            label="Store a key under that name (kept 0600 on this machine, never shown again; or `ftapp secrets set NAME`)",
                            type="password",
                            elem_id="eval-judge-key-value",
                            scale=4,
                        )
                        store_key = gr.Button("Store the key", elem_id="eval-judge-key-store", scale=1, min_width=140)
                    key_status = gr.Markdown(elem_id="eval-judge-key-status")
                    judge_rubric = gr.Textbox(
                        label="Rubric: {input}, {reference}, {answer_a}, {answer_b}",
                        value=DEFAULT_RUBRIC,
                        lines=8,
                        elem_id="eval-judge-rubric",
                    )
                start = gr.Button("▶ Evaluate", variant="primary", elem_id="eval-start")
                started = gr.Markdown(elem_id="eval-started")
            with gr.Column(scale=3):
                pick = Picker(label="Evaluation (newest first)", choices=[], elem_id="eval-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="eval-status")
                aggregate = gr.HTML(elem_id="eval-aggregate")
                only_disagreements = gr.Checkbox(
                    label="Only rows where the combinations answer differently", value=False, elem_id="eval-disagreements"
                )
                rows = gr.HTML(elem_id="eval-rows")
        shown = gr.State(None)
        timer = gr.Timer(POLL_S)

    choices = Choices(dataset=dataset, prompt=prompt, model=model, adapters=adapters, devices=devices)
    refresh = bind(refresh_form, services)
    on_show(tab, refresh, choices, inputs=choices)
    on_show(tab, bind(list_evaluations, services), [pick], inputs=[pick], api_name="list_evaluations")
    on_show(tab, bind(judge_models, services), [judge_model], inputs=[judge_model])
    dataset.change(refresh, choices, choices, show_progress="hidden", api_visibility=PRIVATE)
    model.change(refresh, choices, choices, show_progress="hidden", api_visibility=PRIVATE)
    view = EvaluationView(status=status, aggregate=aggregate, rows=rows, drawn=shown)
    form = named_inputs(
        {
            "dataset_id": dataset,
            "prompt_id": prompt,
            "model_id": model,
            "adapter_ids": adapters,
            "include_base": include_base,
            "fraction": fraction,
            "max_rows": max_rows,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "devices": devices,
            "rewards": rewards,
            "benchmarks": benchmarks,
            "benchmark_dir": benchmark_dir,
            "benchmark_limit": benchmark_limit,
            "judge_model_id": judge_model,
            "judge_url": judge_url,
            "judge_api_model": judge_api_model,
            "judge_key": judge_key,
            "judge_rubric": judge_rubric,
        },
        evaluation_request,
    )
    start.click(
        bind_request(start_evaluation, services, evaluation_request),
        inputs_kwargs=form,
        outputs=[started, pick],
        api_name="start_evaluation",
    )
    # Private: no API endpoint, and out of gradio's run history in the browser, which keeps public events' inputs (a key
    # typed here would be stored there). A harness stores keys with `ftapp secrets set`; no reply holds a key.
    store_key.click(bind(store_api_key, services), [judge_key, judge_key_value], [key_status, judge_key_value], api_visibility=PRIVATE)
    pick.change(bind(show_evaluation, services), [pick, only_disagreements], view, show_progress="hidden", api_name="show_evaluation")
    only_disagreements.change(
        bind(show_evaluation, services), [pick, only_disagreements], view, show_progress="hidden", api_visibility=PRIVATE
    )
    timer.tick(
        bind(poll_evaluation, services),
        [pick, shown, only_disagreements],
        [*view, pick],
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility=PRIVATE,
    )
