"""Runs: every training run from the database, one followed live, cancelled, resumed or compared."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from ftapp.run_vocabulary import LIVE, RESUMABLE, RunKind, RunStatus
from ftapp.runs import LOG_TAIL_MARKER, TrainSpec, UnreadableSpecError, duration, readable_log, run_spec, spec_dict
from ftapp.services import Services
from ui import charts
from ui.choices import Picker
from ui.errors import shows_errors
from ui.page_address import RUN, remember, requested
from ui.polling import Drawn, relabels, settled
from ui.run_compare import compare_runs
from ui.run_text import (
    STATUS_ICONS,
    elapsed_s,
    local_time,
    progress_bar,
    progress_fraction,
    progress_text,
    run_label,
    status_label,
)
from ui.stop_buttons import stop_button
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, on_show, unchanged

LOG_CHARS = 6000
POLL_S = 1.0  # with the supervisor's 0.5 s ingest, a logged step reaches the page within ~2 s
ALL = "all"
FILTERS = [("All", ALL), *((status_label(s), s) for s in STATUS_ICONS)]
LIST_COLUMNS = ["status", "name", "progress", "devices", "model", "dataset", "queued at", "ran", "id"]
COLUMN_WIDTHS = ["11%", "14%", "8%", "7%", "12%", "14%", "12%", "8%", "14%"]
NOTHING_CHOSEN = "No run chosen. Start one in the **Train** tab; it appears here at once."
# Keep the newest lines in sight, unless the user clicked into the log to read it. (Textbox's own
# autoscroll left this log at its top in Chromium: the log is filled while the tab is hidden.)
FOLLOW_LOG = """() => {
  const box = document.querySelector('#runs-log textarea');
  if (box && document.activeElement !== box) { box.scrollTop = box.scrollHeight; }
}"""
# A cancel stops hours of training: ask first. Throwing ends the event here, so the chained cancel never runs.
CONFIRM_CANCEL = """() => {
  if (!window.confirm('Cancel this run? A running trainer saves a checkpoint and stops; Resume continues from it.')) {
    throw new Error('cancel not confirmed');
  }
}"""


class Listing(NamedTuple):
    """The run list: the table, the picker and the runs offered for comparison."""

    table: Any
    pick: Any
    compare: Any


class RunView(NamedTuple):
    """The chosen run, in the one order of its outputs: ``render`` fills it with widgets, the handlers with values."""

    status: Any
    loss_chart: Any
    lr_chart: Any
    grad_chart: Any
    speed_chart: Any
    log: Any
    spec: Any
    error: Any
    produced: Any
    cancel_button: Any
    resume_button: Any
    method_chart: Any  # the two method charts: DPO / GRPO runs only
    method_detail_chart: Any
    drawn: Any  # a ui.polling.Drawn, kept in a gr.State for the timer


def _filtered(services: Services, status_filter: str | None) -> list:
    status = None if status_filter in (None, ALL) else status_filter
    return list(reversed(services.runs.list(status)))  # newest first


def runs_frame(services: Services, runs: list) -> pd.DataFrame:
    models = {m.id: m.name for m in services.models.list()}
    datasets = {d.id: d.name for d in services.datasets.list()}
    rows = [
        {
            "status": status_label(r.status),
            "name": r.name or r.kind,
            "progress": f"{r.step or 0}/{r.total_steps}" if r.total_steps else "",
            "devices": r.gpus or r.devices_requested,
            "model": models.get(r.base_model_id, r.base_model_id),
            "dataset": datasets.get(r.dataset_id, r.dataset_id),
            "queued at": local_time(r.created_at),
            "ran": duration(elapsed_s(r)) if r.started_at else "",
            "id": r.id,
        }
        for r in runs
    ]
    return frame(rows, LIST_COLUMNS)


def list_runs(services: Services, status_filter: str | None = ALL, selected: str | None = None) -> Listing:
    """Runs of one status (or "all"), newest first: the table, the picker (the chosen run while it is listed,
    else the newest) and the runs to compare."""
    runs = _filtered(services, status_filter)
    choices = [(run_label(r), r.id) for r in runs]
    ids = [r.id for r in runs]
    everything = runs if status_filter in (None, ALL) else _filtered(services, ALL)
    return Listing(
        table=runs_frame(services, runs),
        pick=gr.Dropdown(choices=choices, value=selected if selected in ids else (ids[0] if ids else None)),
        # Only fine-tunes have loss curves to chart; a server, a merge or an evaluation would be an empty line.
        compare=gr.Dropdown(choices=[(run_label(r), r.id) for r in everything if r.kind == RunKind.FINETUNE]),
    )


def show_runs(services: Services, status_filter: str | None, selected: str | None, newest_seen: str | None) -> tuple[Any, ...]:
    """The listing when the tab opens: a run started since the last look (from the Train tab, the
    CLI) is chosen, since that is the one the user came to see; otherwise the choice is kept. A fresh
    page (nothing chosen or seen yet) chooses the run its address names: a reload shows it again.

    Outputs: the ``Listing``, then the newest run's id.
    """
    fresh = selected is None and newest_seen is None
    if fresh:
        selected = requested(RUN)
    listing = list_runs(services, status_filter, selected)
    choices = listing.pick.choices
    newest = choices[0][1] if choices else None
    reopened = fresh and selected in [value for _, value in choices]  # (an update made in an event has no .value)
    if newest != newest_seen and not reopened:
        listing = listing._replace(pick=gr.Dropdown(choices=choices, value=newest))
    return (*listing, newest)


def status_markdown(run: Any) -> str:
    lines = [f"### {status_label(run.status)} · {run.name or run.kind}"]
    if run.status == RunStatus.QUEUED:
        lines.append(f"⏳ {progress_text(run)}")
    else:
        lines.append(f"`{progress_bar(progress_fraction(run))}` {progress_text(run)}")
    facts = [
        f"devices **{run.gpus}**" if run.gpus else f"devices **{run.devices_requested}** (requested)",
        f"queued {local_time(run.created_at)}",
    ]
    if run.started_at:
        facts.append(f"started {local_time(run.started_at)}")
        facts.append(f"{'ran' if run.finished_at else 'running for'} {duration(elapsed_s(run))}")
    if run.parent_run_id:
        facts.append(f"resumed from run `{run.parent_run_id[:8]}`")
    start = getattr(run, "adapter_id", None) if run.kind == RunKind.FINETUNE else None
    if start:  # a DPO/GRPO run that continues an adapter
        facts.append(f"starts from adapter `{start[:8]}`")
    if run.mlflow_run_id:
        facts.append(f"MLflow run `{run.mlflow_run_id}`")
    lines.append(" · ".join(facts) + f"  \nRun id `{run.id}`")
    return "\n\n".join(lines)


def error_markdown(run: Any) -> gr.Markdown:
    if run.status == RunStatus.CANCELLED and run.kind != RunKind.FINETUNE:
        return gr.Markdown("#### Stopped\nStopped on request.", visible=True)
    if run.status == RunStatus.CANCELLED:
        text = (
            "#### Cancelled\nStopped on request. **Resume** continues from the last checkpoint, if the trainer wrote one before it stopped."
        )
        return gr.Markdown(text, visible=True)
    if not run.error_text:
        return gr.Markdown("", visible=False)
    heading = f"#### Why it failed: {run.error_cause or 'unknown'}" if run.status == RunStatus.FAILED else "#### Note"
    # The supervisor appends the log tail after this marker; the log box below shows it already.
    summary, marker, _ = run.error_text.partition(LOG_TAIL_MARKER)
    after = "\n\nThe trainer log below ends where it failed." if marker else ""
    # Five backticks: a log line of three (a markdown-printing library) cannot close the block early.
    return gr.Markdown(f"{heading}\n`````text\n{summary.strip()}\n`````{after}", visible=True)


def output_markdown(services: Services, run: Any) -> str:
    if run.status != RunStatus.SUCCEEDED:
        return ""
    if run.kind != RunKind.FINETUNE:
        return {
            RunKind.EVALUATION: "**Results:** answers and scores are in the **Evaluate** tab.",
            RunKind.INFERENCE: "An inference worker of the **Compare** tab; it ended after its idle timeout.",
            RunKind.EXPORT: "**Results:** verification, archive, registry and Hub links are in the **Export** tab.",
            RunKind.SERVE: "An endpoint of the **Serve** tab; it served until it was stopped.",
        }.get(run.kind, "")
    produced = [a for a in services.adapters.list() if a.run_id == run.id]
    if produced:
        return "\n".join(f"**Produced adapter:** `{a.name}` at `{a.location}` (see the Adapters tab)" for a in produced)
    try:
        spec: TrainSpec | None = run_spec(run, TrainSpec)
    except UnreadableSpecError:  # an imported row of another version
        spec = None
    if spec and spec.training_mode == "full":
        return f"**Produced model:** `{spec.adapter_name}` (see the Models tab)"
    return "The run succeeded but registered nothing; the note above says why."


def log_text(services: Services, run: Any) -> str:
    """The log's last lines, progress as readable lines (the file keeps its JSON lines for programs)."""
    return readable_log(services.runs.log_tail(run.id, LOG_CHARS))


def drawn(run: Any) -> Drawn:
    """What changes when there is something new to draw: status and how far the events were read."""
    return Drawn(run.id, run.status, run.events_offset)


def method_charts(spec: dict, metrics: dict) -> tuple[gr.Plot, gr.Plot]:
    """DPO and GRPO runs' own charts (rewards, accuracy, KL...); hidden for every other run."""
    draw = charts.METHOD_FIGURES.get(spec.get("method"))  # only training specs have a method
    if draw is None:
        return gr.Plot(value=None, visible=False), gr.Plot(value=None, visible=False)
    return gr.Plot(value=draw[0](metrics), visible=True), gr.Plot(value=draw[1](metrics), visible=True)


def run_view(services: Services, run: Any) -> RunView:
    metrics = services.runs.metrics(run.id)
    spec = spec_dict(run)
    method_chart, method_detail_chart = method_charts(spec, metrics)
    return RunView(
        status=status_markdown(run),
        loss_chart=charts.loss_figure(metrics),
        lr_chart=charts.learning_rate_figure(metrics),
        grad_chart=charts.grad_norm_figure(metrics),
        speed_chart=charts.throughput_figure(metrics),
        log=log_text(services, run),
        spec=spec,
        error=error_markdown(run),
        produced=output_markdown(services, run),
        # Once asked to stop there is nothing left to cancel; only a fine-tune has checkpoints to resume from.
        cancel_button=stop_button(run.status in LIVE and run.cancel_requested_at is None),
        resume_button=gr.Button(interactive=run.status in RESUMABLE and run.kind == RunKind.FINETUNE),
        method_chart=method_chart,
        method_detail_chart=method_detail_chart,
        drawn=drawn(run),
    )


def _empty_view() -> RunView:
    method_chart, method_detail_chart = method_charts({}, {})
    return RunView(
        status=NOTHING_CHOSEN,
        loss_chart=charts.loss_figure({}),
        lr_chart=charts.learning_rate_figure({}),
        grad_chart=charts.grad_norm_figure({}),
        speed_chart=charts.throughput_figure({}),
        log="",
        spec=None,
        error=gr.Markdown("", visible=False),
        produced="",
        cancel_button=stop_button(False),
        resume_button=gr.Button(interactive=False),
        method_chart=method_chart,
        method_detail_chart=method_detail_chart,
        drawn=None,
    )


@shows_errors
def show_run(services: Services, run_id: str | None) -> RunView:
    """One run: status and progress, loss / learning-rate / grad-norm / throughput charts, log tail and spec."""
    return run_view(services, services.runs.get(run_id)) if run_id else _empty_view()


@shows_errors
def poll_run(services: Services, run_id: str | None, shown: Drawn | None, status_filter: str | None) -> tuple[Any, ...]:
    """The timer's tick: nothing for a finished run already on screen, little while nothing new came in.

    Outputs: the ``RunView``, then the ``Listing``.
    """
    if settled(shown, run_id):
        return (*unchanged(RunView), *unchanged(Listing))  # a finished run never changes again: no query at all
    run = services.runs.get(run_id)
    now = drawn(run)
    if now == shown:
        # No new events: the log may still grow (model loading) and "running for" moves on.
        log = log_text(services, run) if run.status == RunStatus.RUNNING else gr.skip()
        return (*unchanged(RunView)._replace(status=status_markdown(run), log=log), *unchanged(Listing))
    listing = list_runs(services, status_filter, run_id)
    if not relabels(shown, now):
        # Only the icons in the picker's labels depend on status; leaving the picker alone keeps
        # an open dropdown from being redrawn under the user's pointer every second.
        listing = listing._replace(pick=gr.skip(), compare=gr.skip())
    return (*run_view(services, run), *listing)


@shows_errors
def cancel_run(services: Services, run_id: str | None) -> str:
    """Cancel a queued run at once, or ask a running one to save a checkpoint and stop."""
    if not run_id:
        raise gr.Error("Choose a run first.")
    run = services.runs.cancel(run_id)
    if run.status == RunStatus.CANCELLED:
        return "Cancelled the queued run; it never started."
    return "Asked the trainer to stop: it saves a checkpoint, then ends (killed if it takes too long)."


@shows_errors
def resume_run(services: Services, run_id: str | None) -> tuple[str, str]:
    """Queue a new run that continues a stopped or failed one from its last checkpoint; returns its id too."""
    if not run_id:
        raise gr.Error("Choose a run first.")
    run = services.runs.resume(run_id)
    return f"Queued run `{run.id}`, continuing from the last checkpoint of `{run_id[:8]}`.", run.id


def render(services: Services) -> None:
    with gr.Tab("Runs", id="runs") as tab:
        status_filter = gr.Radio(label="Show", choices=FILTERS, value=ALL, elem_id="runs-filter")
        table = gr.Dataframe(
            label="Runs, newest first (click a row to follow it)",
            interactive=False,
            wrap=True,
            max_height=300,
            column_widths=COLUMN_WIDTHS,
            elem_id="runs-table",
        )
        pick = Picker(label="Run", choices=[], value=None, elem_id="runs-pick")
        status = gr.Markdown(NOTHING_CHOSEN, elem_id="runs-status")
        with gr.Row(equal_height=True):
            cancel_button = gr.Button("⏹ Cancel", variant="secondary", interactive=False, elem_id="runs-cancel", scale=0, min_width=150)
            resume_button = gr.Button("↻ Resume", interactive=False, elem_id="runs-resume", scale=0, min_width=150)
            action_result = gr.Markdown(elem_id="runs-action-result")
        error = gr.Markdown(visible=False, elem_id="runs-error")
        produced = gr.Markdown(elem_id="runs-output")
        # The figures carry their own titles; a label badge on top would say it twice.
        with gr.Row():
            loss_chart = gr.Plot(show_label=False, elem_id="runs-loss-chart")
            lr_chart = gr.Plot(show_label=False, elem_id="runs-lr-chart")
        with gr.Row():
            grad_chart = gr.Plot(show_label=False, elem_id="runs-grad-chart")
            speed_chart = gr.Plot(show_label=False, elem_id="runs-speed-chart")
        with gr.Row():  # DPO / GRPO runs only
            method_chart = gr.Plot(show_label=False, visible=False, elem_id="runs-method-chart")
            method_detail_chart = gr.Plot(show_label=False, visible=False, elem_id="runs-method-detail-chart")
        log = gr.Textbox(label="Trainer log (last lines)", lines=14, max_lines=14, interactive=False, autoscroll=False, elem_id="runs-log")
        spec = gr.JSON(label="Resolved spec (what the trainer was given)", elem_id="runs-spec", max_height=360, open=True)
        with gr.Accordion("Compare runs", open=True):
            compare = Picker(label="Runs to compare", choices=[], value=[], multiselect=True, elem_id="runs-compare")
            compare_chart = gr.Plot(show_label=False, elem_id="runs-compare-chart")
            differences = gr.Dataframe(
                label="Settings that differ", interactive=False, wrap=True, max_height=360, elem_id="runs-compare-diff"
            )
        # Inside the tab: a State or Timer placed directly in gr.Tabs would count as a tab.
        shown, new_run, newest_seen = gr.State(None), gr.State(None), gr.State(None)
        timer = gr.Timer(POLL_S)

    listing = Listing(table=table, pick=pick, compare=compare)
    view = RunView(
        status=status,
        loss_chart=loss_chart,
        lr_chart=lr_chart,
        grad_chart=grad_chart,
        speed_chart=speed_chart,
        log=log,
        spec=spec,
        error=error,
        produced=produced,
        cancel_button=cancel_button,
        resume_button=resume_button,
        method_chart=method_chart,
        method_detail_chart=method_detail_chart,
        drawn=shown,
    )
    refresh = bind(list_runs, services)
    on_show(tab, bind(show_runs, services), [*listing, newest_seen], inputs=[status_filter, pick, newest_seen])
    status_filter.change(refresh, [status_filter, pick], listing, show_progress="hidden", api_name="list_runs")
    table.select(clicked_id, outputs=pick, show_progress="hidden", api_visibility=PRIVATE)
    pick.change(bind(show_run, services), pick, view, show_progress="hidden", api_name="show_run")
    pick.change(None, pick, js=remember(RUN))
    # Cheap and read-only, so ticks of several open pages need not wait for each other.
    timer.tick(
        bind(poll_run, services),
        [pick, shown, status_filter],
        [*view, *listing],
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility=PRIVATE,
    )
    cancel_button.click(None, js=CONFIRM_CANCEL).success(bind(cancel_run, services), pick, action_result, api_name="cancel_run").success(
        bind(show_run, services),
        pick,
        view,
        show_progress="hidden",
        api_visibility=PRIVATE,
    ).success(refresh, [status_filter, pick], listing, show_progress="hidden", api_visibility=PRIVATE)
    resume_button.click(bind(resume_run, services), pick, [action_result, new_run], api_name="resume_run").success(
        refresh,
        [status_filter, new_run],
        listing,
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    compare.change(bind(compare_runs, services), compare, [compare_chart, differences], show_progress="hidden", api_name="compare_runs")
    log.change(None, js=FOLLOW_LOG)
