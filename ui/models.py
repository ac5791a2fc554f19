"""Models: register base models from the Hub, a local directory or the MLflow registry."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ftapp.models import AddModelRequest
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, check_removal, on_show, picker

LIST_COLUMNS = ["name", "type", "architecture", "parameters", "source", "licence", "id"]
# Without widths, an empty column shrinks until its header wraps one letter per line.
COLUMN_WIDTHS = ["16%", "8%", "14%", "9%", "23%", "10%", "20%"]


def parameter_count(count: int | None) -> str:
    if not count:
        return ""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _licence(record) -> str:
    if not record.gated:
        return record.license or ""
    state = "accepted" if record.license_accepted_at else "not accepted"
    return f"{record.license or 'gated'} (gated, {state})"


def list_models(services: Services, selected: str | None = None) -> tuple[pd.DataFrame, gr.Dropdown]:
    """The registered base models (name, type, architecture, parameters, source, licence, id) and the picker's choices."""
    records = services.models.list()
    rows = [
        {
            "name": r.name,
            "type": r.type,
            "architecture": r.architecture,
            "parameters": parameter_count(r.num_parameters),
            "source": r.huggingface_name or (f"{r.registry_name} v{r.registry_version}" if r.registry_name else r.location),
            "licence": _licence(r),
            "id": r.id,
        }
        for r in records
    ]
    choices = [(r.name, r.id) for r in records]
    return frame(rows, LIST_COLUMNS), picker(choices, selected)


def _registered(services: Services, request: AddModelRequest) -> tuple[str, str]:
    record = services.models.add(request)
    size = parameter_count(record.num_parameters)
    return f"Registered **{record.name}** ({record.architecture or 'unknown architecture'}{', ' + size if size else ''}).", record.id


@shows_errors
def register_hub(services: Services, hub_id: str, name: str, description: str) -> tuple[str, str]:
    """Register a base model by its Hugging Face Hub id."""
    return _registered(
        services,
        AddModelRequest(
            type="huggingface",
            name=name.strip(),
            huggingface_name=hub_id.strip() or None,
            description=description,
        ),
    )


@shows_errors
def register_local(services: Services, path: str, name: str, description: str) -> tuple[str, str]:
    """Register a base model from a directory on the server."""
    return _registered(
        services,
        AddModelRequest(
            type="project",
            name=name.strip(),
            location=path.strip() or None,
            description=description,
        ),
    )


@shows_errors
def register_from_registry(services: Services, registry_name: str, version: str, name: str, description: str) -> tuple[str, str]:
    """Register a base model from the MLflow model registry (a name and a version, default the latest)."""
    return _registered(
        services,
        AddModelRequest(
            type="model_registry",
            name=name.strip(),
            registry_name=registry_name.strip() or None,
            registry_version=version.strip() or None,
            description=description,
        ),
    )


@shows_errors
def describe_model(services: Services, model_id: str | None) -> tuple[str, gr.Button]:
    """A model's source, type, licence and description (markdown)."""
    if not model_id:
        return "", gr.Button(interactive=False)
    record = services.models.get(model_id)
    lines = [f"### {record.name}", f"**Loads from:** `{record.source}`  "]
    if record.model_type:
        lines.append(f"**Model type:** {record.model_type}  ")
    if record.gated:
        accepted = record.license_accepted_at.strftime("%Y-%m-%d %H:%M") if record.license_accepted_at else "not yet"
        lines.append(f"**Gated:** yes — licence {record.license or 'unknown'}, accepted here: {accepted}  ")
    if record.description:
        lines.append(f"**Description:** {record.description}")
    # Only gated Hub models have a licence to accept; the button would mean nothing for the rest.
    return "\n".join(lines), gr.Button(interactive=bool(record.gated))


@shows_errors
def accept_license(services: Services, model_id: str | None) -> str:
    """Record that you accept a gated model's licence."""
    if not model_id:
        raise gr.Error("Choose a model first.")
    record = services.models.accept_license(model_id)
    return f"Recorded that you accept the licence of **{record.name}** ({record.license or 'gated'})."


@shows_errors
def remove_model(services: Services, model_id: str | None, confirmed: bool) -> tuple[str, None, bool]:
    """Forget a model (``confirmed`` must be true); its files stay where they are."""
    check_removal(model_id, confirmed, "a model")
    services.models.remove(model_id)
    return "Removed the model from the registry; its files were left where they are.", None, False


def render(services: Services) -> None:
    with gr.Tab("Models", id="models") as tab:
        with gr.Accordion("Register a base model", open=True):
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="defaults to the Hub id, path or registry name")
                description = gr.Textbox(label="Description")
            with gr.Tabs():
                with gr.Tab("Hugging Face Hub", id="model-hub"):
                    hub_id = gr.Textbox(label="Model id", placeholder="Qwen/Qwen2.5-0.5B-Instruct")
                    hub_button = gr.Button("Register from the Hub", variant="primary")
                with gr.Tab("Local directory", id="model-local"):
                    path = gr.Textbox(
                        label="Directory with config.json (what save_pretrained wrote), or a .gguf file (converted into the home)",
                        placeholder="/models/my-model",
                    )
                    path_button = gr.Button("Register the directory", variant="primary")
                with gr.Tab("MLflow registry", id="model-registry"):
                    with gr.Row():
                        registry_name = gr.Textbox(label="Registered model name", scale=2)
                        version = gr.Textbox(label="Version", placeholder="latest")
                    registry_button = gr.Button("Register from MLflow", variant="primary")
            register_status = gr.Markdown()
        table = gr.Dataframe(
            label="Models (click a row to choose it)", interactive=False, wrap=True, max_height=360, column_widths=COLUMN_WIDTHS
        )
        chosen = Picker(label="Model", choices=[], value=None)
        details = gr.Markdown()
        with gr.Row():
            accept_button = gr.Button("Accept the licence", interactive=False, scale=0, min_width=220)
        accept_status = gr.Markdown()
        with gr.Accordion("Remove the chosen model", open=False):
            confirm = gr.Checkbox(label="Yes, forget this model (adapters trained on it must be removed first)")
            remove_button = gr.Button("Remove model", variant="stop")
            remove_status = gr.Markdown()
        new_id = gr.State(None)  # inside the tab: in gr.Tabs itself it would count as a tab

    refresh = bind(list_models, services)
    on_show(tab, refresh, [table, chosen], api_name="list_models")
    for button, handler, inputs, api_name in (
        (hub_button, register_hub, [hub_id, name, description], "register_model_hub"),
        (path_button, register_local, [path, name, description], "register_model_local"),
        (registry_button, register_from_registry, [registry_name, version, name, description], "register_model_registry"),
    ):
        button.click(bind(handler, services), inputs, [register_status, new_id], api_name=api_name).success(
            refresh,
            inputs=new_id,
            outputs=[table, chosen],
            show_progress="hidden",
            api_visibility=PRIVATE,
        )
    table.select(clicked_id, outputs=chosen, show_progress="hidden", api_visibility=PRIVATE)
    chosen.change(bind(describe_model, services), chosen, [details, accept_button], api_name="describe_model")
    accept_button.click(bind(accept_license, services), chosen, accept_status, api_name="accept_license").success(
        refresh,
        outputs=[table, chosen],
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
    remove_button.click(bind(remove_model, services), [chosen, confirm], [remove_status, chosen, confirm], api_name="remove_model").success(
        refresh,
        outputs=[table, chosen],
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
