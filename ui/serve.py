"""Serve: an OpenAI-compatible endpoint on 127.0.0.1 for a model or a base model + adapter, and a curl to try it.

The endpoint is a supervised run (``transformers serve``, or ``vllm serve`` when vLLM is installed);
**Stop** ends its process group, which frees the GPU. What the page says about authentication is what
the server does: a vLLM endpoint needs its generated token (read from a 0600 file, never shown),
``transformers serve`` has none.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ftapp.shipping import Endpoint, ServeRequest, vllm_installed
from ui.errors import shows_errors
from ui.run_text import FINISHED
from ui.train_form import device_choices
from ui.wiring import bind, on_show, run_picker

POLL_S = 1.0
NOTHING_CHOSEN = "No endpoint chosen. Pick a model (and optionally an adapter), then **Start endpoint**."
NO_ADAPTER = ""
STATE_LABELS = {RunStatus.QUEUED: "⏳ Queued", "starting": "🔄 Starting (loading the model)", "serving": "🟢 Serving",
                "stopped": "⏹ Stopped", RunStatus.FAILED: "❌ Failed", RunStatus.CANCELLED: "⏹ Cancelled before it served"}


def engine_choices() -> list[tuple[str, str]]:
    vllm = "vLLM (adapters natively, bearer token)" + ("" if vllm_installed() else ": not installed")
    return [("auto: vLLM when installed, else transformers serve", "auto"),
            ("transformers serve (no token; an adapter is merged first)", "transformers"), (vllm, "vllm")]


def _keep(choices: list[tuple[str, str]], selected: Any, fallback: Any = None) -> Any:
    return selected if selected in [value for _, value in choices] else fallback


@shows_errors
def refresh_form(services: Services, model_id: str | None, adapter_id: str | None, devices: str | None) -> tuple[gr.Dropdown, ...]:
    models = [(m.name, m.id) for m in services.models.list()]
    model_id = _keep(models, model_id, models[0][1] if models else None)
    adapters = [("none: the model alone", NO_ADAPTER)] + [(a.name, a.id) for a in services.adapters.list(model_id) if a.location]
    machine = device_choices(services.machine())
    return (gr.Dropdown(choices=models, value=model_id), gr.Dropdown(choices=adapters, value=_keep(adapters, adapter_id, NO_ADAPTER)),
            gr.Dropdown(choices=machine, value=_keep(machine, devices, "auto")))


def serve_request(model_id: str | None, adapter_id: str | None, devices: str | None, engine: str | None) -> ServeRequest:
    return ServeRequest(model_id=model_id or "", adapter_id=adapter_id or "", gpus=devices or "auto", engine=engine or "auto")


@shows_errors
def start_endpoint(services: Services, *form: Any) -> tuple[str, gr.Dropdown]:
    run = services.serving.submit(serve_request(*form))
    return f"Starting `{run.id[:8]}`: {run.name}. The URL appears once the model is loaded.", list_endpoints(services, run.id)


def list_endpoints(services: Services, selected: str | None = None) -> gr.Dropdown:
    return run_picker(services.serving.list(), selected)


def endpoint_markdown(endpoint: Endpoint) -> str:
    lines = [f"### {STATE_LABELS.get(endpoint.state, endpoint.state)} · {html.escape(endpoint.run.name or '')}", ""]
    if endpoint.state == "serving":
        lines += [f"**Base URL** (OpenAI-compatible): `{endpoint.base_url}`  ", f"**Model name**: `{endpoint.served_model}`  ",
                  f"**Engine**: {endpoint.engine}", ""]
    if endpoint.state in ("serving", RunStatus.QUEUED, "starting"):
        lines.append(f"**Authentication**: {html.escape(endpoint.auth_note)}")
    if endpoint.state == "serving" and endpoint.limits_note:
        lines.append(f"\n{html.escape(endpoint.limits_note)}")
    if endpoint.merge_note:
        lines.append(f"\n{endpoint.merge_note}")
    if endpoint.run.status == RunStatus.FAILED:
        summary = (endpoint.run.error_text or "").partition("\n--- log tail ---\n")[0].strip()
        lines += ["", f"**Failed ({endpoint.run.error_cause or 'unknown'}):**", "`````text", summary, "`````"]
    lines.append(f"\nRun id `{endpoint.run.id}` · the server's log is in the Runs tab")
    return "\n".join(lines)


def signature(endpoint: Endpoint) -> str:
    return f"{endpoint.run.id}|{endpoint.run.status}|{endpoint.state}"


@shows_errors
def show_endpoint(services: Services, run_id: str | None) -> tuple[Any, ...]:
    if not run_id:
        return NOTHING_CHOSEN, gr.Code(value="", visible=False), gr.Button(interactive=False), ""
    endpoint = services.serving.endpoint(run_id)
    curl = endpoint.curl
    return (endpoint_markdown(endpoint), gr.Code(value=curl or "", visible=bool(curl)),
            gr.Button(interactive=endpoint.run.status not in FINISHED), signature(endpoint))


@shows_errors
def stop_endpoint(services: Services, run_id: str | None) -> tuple[Any, ...]:
    if not run_id:
        raise gr.Error("Choose an endpoint first.")
    services.serving.stop(run_id)
    return show_endpoint(services, run_id)


@shows_errors
def poll_endpoint(services: Services, run_id: str | None, shown: str | None) -> tuple[Any, ...]:
    skip = (gr.skip(),) * 5
    parts = (shown or "").split("|")
    if not run_id or (len(parts) == 3 and parts[0] == run_id and parts[1] in FINISHED):
        return skip
    endpoint = services.serving.endpoint(run_id)
    if signature(endpoint) == shown:
        return skip
    pick = list_endpoints(services, run_id) if parts[0] != run_id or parts[1] != endpoint.run.status else gr.skip()
    return (*show_endpoint(services, run_id), pick)


def render(services: Services) -> None:
    with gr.Tab("Serve", id="serve") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                model = gr.Dropdown(label="Model", choices=[], elem_id="serve-model")
                adapter = gr.Dropdown(label="Adapter (trained on this model)", choices=[], elem_id="serve-adapter")
                devices = gr.Dropdown(label="Device", choices=[], elem_id="serve-devices")
                engine = gr.Radio(engine_choices(), value="auto", label="Server", elem_id="serve-engine")
                start = gr.Button("▶ Start endpoint", variant="primary", elem_id="serve-start")
                started = gr.Markdown(elem_id="serve-started")
            with gr.Column(scale=2):
                pick = gr.Dropdown(label="Endpoint (newest first)", choices=[], elem_id="serve-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="serve-status")
                curl = gr.Code(label="Try it: copy, paste into a terminal", language="shell", visible=False,
                               interactive=False, elem_id="serve-curl")
                stop = gr.Button("⏹ Stop (frees the GPU)", variant="stop", interactive=False, elem_id="serve-stop")
        shown = gr.State("")
        timer = gr.Timer(POLL_S)

    form = [model, adapter, devices]
    refresh = bind(refresh_form, services)
    on_show(tab, refresh, form, inputs=form)
    on_show(tab, lambda selected: list_endpoints(services, selected), [pick], inputs=[pick])
    model.change(refresh, form, form, show_progress="hidden")
    view = [status, curl, stop, shown]
    start.click(bind(start_endpoint, services), [model, adapter, devices, engine], [started, pick])
    pick.change(bind(show_endpoint, services), [pick], view, show_progress="hidden")
    stop.click(bind(stop_endpoint, services), [pick], view)
    timer.tick(bind(poll_endpoint, services), [pick, shown], [*view, pick], show_progress="hidden", concurrency_limit=None)
