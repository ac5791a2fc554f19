"""Export: merge an adapter into its base (verified), archive, register in MLflow or push to the Hub.

Every export is a supervised run; this tab starts one and follows it. The archive download button
appears only once ``ExportService.archive_file`` vouches for the file (the run succeeded, the file is
where the run recorded it, at its recorded size): the download fails closed.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from ftapp.errors import FtappError
from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ftapp.shipping import ExportRequest, ExportResult
from ui.errors import shows_errors
from ui.run_text import FINISHED, status_label
from ui.train_form import device_choices
from ui.wiring import bind, on_show, run_picker

POLL_S = 1.0
ACTIONS = [
    ("Merge into the base model (saved, reloaded and verified)", "merge"),
    ("Archive (.tar.gz to download)", "archive"),
    ("Register in the MLflow model registry", "register"),
    ("Push to the Hugging Face Hub", "push"),
]
NOTHING_CHOSEN = "No export chosen. Pick an adapter (or a model) and an action, then **Export**."
ALONE = ""  # the adapter picker's "no adapter": export the model itself


def _keep(choices: list[tuple[str, str]], selected: Any, fallback: Any = None) -> Any:
    values = [value for _, value in choices]
    return selected if selected in values else fallback


@shows_errors
def refresh_form(services: Services, adapter_id: str | None, model_id: str | None, devices: str | None) -> tuple[gr.Dropdown, ...]:
    models = {m.id: m for m in services.models.list()}
    adapters = [(f"{a.name} (on {models[a.model_id].name})" if a.model_id in models else a.name, a.id)
                for a in services.adapters.list() if a.location]
    adapter_choices = [("none: export the model itself", ALONE), *adapters]
    model_choices = [(m.name, m.id) for m in models.values()]
    machine = device_choices(services.machine())
    return (gr.Dropdown(choices=adapter_choices, value=_keep(adapter_choices, adapter_id, adapters[0][1] if adapters else ALONE)),
            gr.Dropdown(choices=model_choices, value=_keep(model_choices, model_id)),
            gr.Dropdown(choices=machine, value=_keep(machine, devices, "auto")))


@shows_errors
def follow_adapter(services: Services, adapter_id: str | None, model_id: str | None) -> Any:
    """Choosing an adapter chooses its base model: the only one it can be merged into."""
    return services.adapters.get(adapter_id).model_id if adapter_id else model_id


def export_request(adapter_id: str | None, model_id: str | None, action: str | None, name: str | None,
                   repo_id: str | None, private: bool, devices: str | None) -> ExportRequest:
    return ExportRequest(base_model_id=model_id or "", adapter_id=adapter_id or "", model_name=(name or "").strip(),
                         action=action or "merge", repo_id=(repo_id or "").strip(), private=bool(private), gpus=devices or "auto")


@shows_errors
def start_export(services: Services, *form: Any) -> tuple[str, gr.Dropdown]:
    run = services.exports.submit(export_request(*form))
    return f"Queued `{run.id[:8]}`: {run.name}.", list_exports(services, run.id)


def list_exports(services: Services, selected: str | None = None) -> gr.Dropdown:
    return run_picker(services.exports.list(), selected)


def result_markdown(result: ExportResult) -> str:
    run = result.run
    lines = [f"### {status_label(run.status)} · {html.escape(run.name or '')}", ""]
    if run.status == RunStatus.FAILED:
        summary = (run.error_text or "").partition("\n--- log tail ---\n")[0].strip()
        lines += [f"**Failed ({run.error_cause or 'unknown'}):**", "`````text", summary, "`````", ""]
    if result.verified is not None:
        verdict = "✅ **Verified**" if result.verified else "❌ **Not verified: the exported model answers differently**"
        lines.append(f"{verdict}: {result.prompts_matched}/{result.prompts} fixed prompts answered token-for-token alike "
                     f"by the reloaded export (fresh process) and base + adapter; largest logit difference "
                     f"{result.max_logit_diff:.3g} ({result.dtype}).")
        if result.qlora:
            lines.append("\nQLoRA adapter: merged into the de-quantised base, as the model card explains.")
    if result.merged_dir:
        lines.append(f"\nMerged model saved to `{result.merged_dir}` and added to **Models** as `{result.name}`.")
    if result.archive:
        lines.append(f"\nArchive `{result.archive}`: use the download button below.")
    if result.registered:
        r = result.registered
        lines.append(f"\nRegistered `{r.model_uri}` ({r.kind}): [open in the MLflow UI]({r.link}) once it runs "
                     f"(`{r.ui_command}`).")
    if result.pushed:
        p = result.pushed
        lines.append(f"\nPushed to [{p.repo_id}]({p.repo_url}) ({'private' if p.private else 'public'}), "
                     f"[commit]({p.commit_url}).")
    lines.append(f"\nRun id `{run.id}` · its log is in the Runs tab")
    return "\n".join(lines)


def checks_rows(result: ExportResult) -> list[list[Any]]:
    return [[c.get("prompt"), "✅" if c.get("tokens_match") else "❌", c.get("reference"), c.get("exported"),
             None if c.get("max_logit_diff") is None else f"{c['max_logit_diff']:.3g}", c.get("diagnosis") or ""]
            for c in result.checks]


def download_button(services: Services, result: ExportResult) -> gr.DownloadButton:
    if result.action != "archive" or result.run.status != RunStatus.SUCCEEDED:
        return gr.DownloadButton(value=None, visible=False)
    try:
        path = services.exports.archive_file(result.run.id)
    except (FtappError, OSError):  # any doubt about the file hides the button: the download fails closed
        return gr.DownloadButton(value=None, visible=False)
    return gr.DownloadButton(label=f"⬇ Download {path.name}", value=str(path), visible=True)


def signature(run: Any) -> str:
    return f"{run.id}|{run.status}|{run.events_offset}"


@shows_errors
def show_export(services: Services, run_id: str | None) -> tuple[Any, ...]:
    if not run_id:
        return NOTHING_CHOSEN, gr.Dataframe(value=[], visible=False), gr.DownloadButton(visible=False), ""
    result = services.exports.result(run_id)
    rows = checks_rows(result)
    return (result_markdown(result), gr.Dataframe(value=rows, visible=bool(rows)), download_button(services, result),
            signature(result.run))


@shows_errors
def poll_export(services: Services, run_id: str | None, shown: str | None) -> tuple[Any, ...]:
    """Redraw only when the run changed; a finished run on screen costs nothing."""
    skip = (gr.skip(),) * 5
    parts = (shown or "").split("|")
    if not run_id or (len(parts) == 3 and parts[0] == run_id and parts[1] in FINISHED):
        return skip
    run = services.runs.get(run_id)
    if signature(run) == shown:
        return skip
    pick = list_exports(services, run_id) if parts[0] != run_id or parts[1] != run.status else gr.skip()
    return (*show_export(services, run_id), pick)


def render(services: Services) -> None:
    with gr.Tab("Export", id="export") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                adapter = gr.Dropdown(label="Adapter", choices=[], elem_id="export-adapter")
                model = gr.Dropdown(label="Base model (alone: a merged or fine-tuned model to export)", choices=[],
                                    elem_id="export-model")
                action = gr.Radio(ACTIONS, value="merge", label="Action", elem_id="export-action")
                name = gr.Textbox(label="Name (merged model, registered model or archive)", placeholder="default: from the adapter",
                                  elem_id="export-name")
                with gr.Accordion("Hub push and device", open=False):
                    repo_id = gr.Textbox(label="Hub repo id (push)", placeholder="you/my-adapter", elem_id="export-repo")
                    private = gr.Checkbox(label="Private repo", value=True, elem_id="export-private",
                                          info="The Hugging Face token comes from Settings; it never leaves this machine otherwise.")
                    devices = gr.Dropdown(label="Device (merge)", choices=[], elem_id="export-devices")
                start = gr.Button("▶ Export", variant="primary", elem_id="export-start")
                started = gr.Markdown(elem_id="export-started")
            with gr.Column(scale=2):
                pick = gr.Dropdown(label="Export (newest first)", choices=[], elem_id="export-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="export-status")
                checks = gr.Dataframe(headers=["prompt", "same tokens", "base + adapter", "exported", "max logit diff", "why"],
                                      value=[], visible=False, wrap=True, interactive=False, elem_id="export-checks")
                download = gr.DownloadButton("⬇ Download archive", visible=False, elem_id="export-download")
        shown = gr.State("")
        timer = gr.Timer(POLL_S)

    form = [adapter, model, devices]
    refresh = bind(refresh_form, services)
    on_show(tab, refresh, form, inputs=form)
    on_show(tab, lambda selected: list_exports(services, selected), [pick], inputs=[pick])
    adapter.change(bind(follow_adapter, services), [adapter, model], [model], show_progress="hidden")
    view = [status, checks, download, shown]
    start.click(bind(start_export, services), [adapter, model, action, name, repo_id, private, devices], [started, pick])
    pick.change(bind(show_export, services), [pick], view, show_progress="hidden")
    timer.tick(bind(poll_export, services), [pick, shown], [*view, pick], show_progress="hidden", concurrency_limit=None)
