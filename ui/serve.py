"""Serve: an OpenAI-compatible endpoint on 127.0.0.1 for a model or a base model + adapter, and a curl to try it.

The endpoint is a supervised run (``transformers serve``, or ``vllm serve`` when vLLM is installed);
**Stop** ends its process group, which frees the GPU. What the page says about authentication is what
the server does: a vLLM endpoint needs its generated token (read from a 0600 file, never shown),
``transformers serve`` has none.
"""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import gradio as gr

from ftapp.run_vocabulary import RunStatus
from ftapp.services import Services
from ftapp.shipping import Endpoint, EndpointState, ServeRequest, vllm_installed
from ui.choices import Picker
from ui.errors import shows_errors
from ui.polling import Drawn, relabels, settled
from ui.run_text import FINISHED, failure_lines
from ui.stop_buttons import stop_button
from ui.train_form import device_choices
from ui.wiring import PRIVATE, bind, bind_request, named_inputs, on_show, run_picker, unchanged

POLL_S = 1.0
NOTHING_CHOSEN = "No endpoint chosen. Pick a model (and optionally an adapter), then **Start endpoint**."
NO_ADAPTER = ""
STATE_LABELS = {
    EndpointState.QUEUED: "⏳ Queued",
    EndpointState.STARTING: "🔄 Starting (loading the model)",
    EndpointState.SERVING: "🟢 Serving",
    EndpointState.STOPPED: "⏹ Stopped",
    EndpointState.FAILED: "❌ Failed",
    EndpointState.CANCELLED: "⏹ Cancelled before it served",
}


def engine_choices() -> list[tuple[str, str]]:
    vllm = "vLLM (adapters natively, bearer token)" + ("" if vllm_installed() else ": not installed")
    return [
        ("auto: vLLM when installed, else transformers serve", "auto"),
        ("transformers serve (no token; an adapter is merged first)", "transformers"),
        (vllm, "vllm"),
    ]


class Choices(NamedTuple):
    """The pickers filled from the database, in one order: inputs and outputs of ``refresh_form``."""

    model: Any
    adapter: Any
    devices: Any


class EndpointView(NamedTuple):
    """The chosen endpoint: its state and URL, a curl to try it and the stop button."""

    status: Any
    curl: Any
    stop: Any
    drawn: Any  # a ui.polling.Drawn, kept in a gr.State for the timer


def _keep(choices: list[tuple[str, str]], selected: Any, fallback: Any = None) -> Any:
    return selected if selected in [value for _, value in choices] else fallback


@shows_errors
def refresh_form(services: Services, model_id: str | None, adapter_id: str | None, devices: str | None) -> Choices:
    models = [(m.name, m.id) for m in services.models.list()]
    model_id = _keep(models, model_id, models[0][1] if models else None)
    adapters = [("none: the model alone", NO_ADAPTER)] + [(a.name, a.id) for a in services.adapters.list(model_id) if a.location]
    machine = device_choices(services.machine())
    return Choices(
        model=gr.Dropdown(choices=models, value=model_id),
        adapter=gr.Dropdown(choices=adapters, value=_keep(adapters, adapter_id, NO_ADAPTER)),
        devices=gr.Dropdown(choices=machine, value=_keep(machine, devices, "auto")),
    )


def serve_request(model_id: str | None, adapter_id: str | None, devices: str | None, engine: str | None) -> ServeRequest:
    return ServeRequest(model_id=model_id or "", adapter_id=adapter_id or "", gpus=devices or "auto", engine=engine or "auto")


@shows_errors
def start_endpoint(services: Services, request: ServeRequest) -> tuple[str, gr.Dropdown]:
    """Start an OpenAI-compatible endpoint on 127.0.0.1 for a model (and adapter); returns the endpoints, it chosen."""
    run = services.serving.submit(request)
    return f"Starting `{run.id[:8]}`: {run.name}. The URL appears once the model is loaded.", list_endpoints(services, run.id)


def list_endpoints(services: Services, selected: str | None = None) -> gr.Dropdown:
    """The endpoints, newest first, as the picker's choices (label, run id)."""
    return run_picker(services.serving.list(), selected)


def endpoint_markdown(endpoint: Endpoint) -> str:
    lines = [f"### {STATE_LABELS.get(endpoint.state, endpoint.state)} · {html.escape(endpoint.run.name or '')}", ""]
    if endpoint.state == EndpointState.SERVING:
        lines += [
            f"**Base URL** (OpenAI-compatible): `{endpoint.base_url}`  ",
            f"**Model name**: `{endpoint.served_model}`  ",
            f"**Engine**: {endpoint.engine}",
            "",
        ]
    if endpoint.state in (EndpointState.SERVING, EndpointState.QUEUED, EndpointState.STARTING):
        lines.append(f"**Prompt format**: {html.escape(endpoint.format_note)}  ")
        lines.append(f"**Authentication**: {html.escape(endpoint.auth_note)}")
    if endpoint.state == EndpointState.SERVING and endpoint.limits_note:
        lines.append(f"\n{html.escape(endpoint.limits_note)}")
    if endpoint.merge_note:
        lines.append(f"\n{endpoint.merge_note}")
    if endpoint.run.status == RunStatus.FAILED:
        lines += ["", *failure_lines(endpoint.run)]
    lines.append(f"\nRun id `{endpoint.run.id}` · the server's log is in the Runs tab")
    return "\n".join(lines)


def drawn(endpoint: Endpoint) -> Drawn:
    return Drawn(endpoint.run.id, endpoint.run.status, endpoint.state)


@shows_errors
def show_endpoint(services: Services, run_id: str | None) -> EndpointView:
    """One endpoint: its state, base URL, model name and authentication, and a curl to try it."""
    if not run_id:
        return EndpointView(status=NOTHING_CHOSEN, curl=gr.Code(value="", visible=False), stop=stop_button(False), drawn=None)
    endpoint = services.serving.endpoint(run_id)
    curl = endpoint.curl
    return EndpointView(
        status=endpoint_markdown(endpoint),
        curl=gr.Code(value=curl or "", visible=bool(curl)),
        # Live until it is asked to stop: a second stop would have nothing left to do.
        stop=stop_button(endpoint.run.status not in FINISHED and endpoint.run.cancel_requested_at is None),
        drawn=drawn(endpoint),
    )


@shows_errors
def stop_endpoint(services: Services, run_id: str | None) -> EndpointView:
    """Stop an endpoint: its process group ends, which frees the GPU."""
    if not run_id:
        raise gr.Error("Choose an endpoint first.")
    services.serving.stop(run_id)
    return show_endpoint(services, run_id)


@shows_errors
def poll_endpoint(services: Services, run_id: str | None, shown: Drawn | None) -> tuple[Any, ...]:
    """Redraw only when the endpoint's state changed; a finished one on screen costs nothing.

    Outputs: the ``EndpointView``, then the picker.
    """
    if settled(shown, run_id):
        return (*unchanged(EndpointView), gr.skip())
    endpoint = services.serving.endpoint(run_id)
    now = drawn(endpoint)
    if now == shown:
        return (*unchanged(EndpointView), gr.skip())
    pick = list_endpoints(services, run_id) if relabels(shown, now) else gr.skip()
    return (*show_endpoint(services, run_id), pick)


def render(services: Services) -> None:
    with gr.Tab("Serve", id="serve") as tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                model = Picker(label="Model", choices=[], elem_id="serve-model")
                adapter = Picker(label="Adapter (trained on this model)", choices=[], elem_id="serve-adapter")
                devices = Picker(label="Device", choices=[], elem_id="serve-devices")
                engine = gr.Radio(engine_choices(), value="auto", label="Server", elem_id="serve-engine")
                start = gr.Button("▶ Start endpoint", variant="primary", elem_id="serve-start")
                started = gr.Markdown(elem_id="serve-started")
            with gr.Column(scale=2):
                pick = Picker(label="Endpoint (newest first)", choices=[], elem_id="serve-pick")
                status = gr.Markdown(NOTHING_CHOSEN, elem_id="serve-status")
                curl = gr.Code(
                    label="Try it: copy, paste into a terminal",
                    language="shell",
                    visible=False,
                    interactive=False,
                    wrap_lines=True,  # the request body is one long line: wrapped, it stays on the page (a copy keeps it whole)
                    elem_id="serve-curl",
                )
                stop = gr.Button("⏹ Stop (frees the GPU)", variant="secondary", interactive=False, elem_id="serve-stop")
        shown = gr.State(None)
        timer = gr.Timer(POLL_S)

    choices = Choices(model=model, adapter=adapter, devices=devices)
    refresh = bind(refresh_form, services)
    on_show(tab, refresh, choices, inputs=choices)
    on_show(tab, bind(list_endpoints, services), [pick], inputs=[pick], api_name="list_endpoints")
    model.change(refresh, choices, choices, show_progress="hidden", api_visibility=PRIVATE)
    view = EndpointView(status=status, curl=curl, stop=stop, drawn=shown)
    form = named_inputs({"model_id": model, "adapter_id": adapter, "devices": devices, "engine": engine}, serve_request)
    start.click(
        bind_request(start_endpoint, services, serve_request), inputs_kwargs=form, outputs=[started, pick], api_name="start_endpoint"
    )
    pick.change(bind(show_endpoint, services), [pick], view, show_progress="hidden", api_name="show_endpoint")
    stop.click(bind(stop_endpoint, services), [pick], view, api_name="stop_endpoint")
    timer.tick(
        bind(poll_endpoint, services), [pick, shown], [*view, pick], show_progress="hidden", concurrency_limit=None, api_visibility=PRIVATE
    )
