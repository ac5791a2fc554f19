"""Adapters: register a PEFT adapter (local directory or Hub id) on its base model; see its lineage."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ftapp.models import AddAdapterRequest
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, check_removal, on_show

# Lineage: which model it sits on, which prompt and run produced it (and how low that run's losses
# ended), and what its own adapter_config.json says the base was (a mismatch with "base model" is
# worth seeing).
LIST_COLUMNS = ["name", "base model", "prompt", "run", "train loss", "eval loss", "peft", "trained on (adapter config)", "source", "id"]
COLUMN_WIDTHS = ["11%", "10%", "10%", "11%", "6%", "6%", "5%", "11%", "15%", "15%"]  # keeps empty columns readable


def final_losses(services: Services, run_id: str | None) -> tuple[str, str]:
    """The last train and eval loss the run logged, as the table shows them."""
    if not run_id:
        return "", ""
    metrics = services.runs.metrics(run_id)

    def last(name: str) -> str:
        return f"{metrics[name][-1][1]:.4f}" if metrics.get(name) else ""

    return last("loss"), last("eval_loss")


def list_adapters(services: Services) -> tuple[pd.DataFrame, gr.Dropdown, gr.Dropdown, gr.Dropdown]:
    """The adapters with their lineage (base model, prompt, run and its last losses, id), then the choices of
    the adapter, base model and prompt pickers."""
    adapters = services.adapters.list()
    models = {m.id: m.name for m in services.models.list()}
    prompts = {p.id: p.name for p in services.prompts.list()}
    runs = {r.id: r for r in services.runs.list()}
    rows = []
    for a in adapters:
        run = runs.get(a.run_id or "")
        train_loss, eval_loss = final_losses(services, run.id if run else None)
        rows.append(
            {
                "name": a.name,
                "base model": models.get(a.model_id, a.model_id),
                "prompt": prompts.get(a.prompt_id, a.prompt_id or ""),
                "run": f"{run.name or run.kind} · {run.id[:8]}" if run else a.run_id,
                "train loss": train_loss,
                "eval loss": eval_loss,
                "peft": a.peft_type,
                "trained on (adapter config)": a.base_model_name,
                "source": a.huggingface_name or a.location,
                "id": a.id,
            }
        )
    return (
        frame(rows, LIST_COLUMNS),
        gr.Dropdown(choices=[(a.name, a.id) for a in adapters]),
        gr.Dropdown(choices=[(name, model_id) for model_id, name in models.items()]),
        gr.Dropdown(choices=[(name, prompt_id) for prompt_id, name in prompts.items()]),
    )


def _registered(services: Services, request: AddAdapterRequest) -> str:
    record = services.adapters.add(request)
    return f"Registered adapter **{record.name}** ({record.peft_type or 'unknown PEFT type'})."


@shows_errors
def register_local(services: Services, path: str, name: str, model_id: str | None, prompt_id: str | None, description: str) -> str:
    """Register a PEFT adapter directory on the server on its base model."""
    return _registered(
        services,
        AddAdapterRequest(
            name=name,
            model_id=model_id or "",
            type="project",
            location=path.strip() or None,
            prompt_id=prompt_id or None,
            description=description,
        ),
    )


@shows_errors
def register_hub(services: Services, hub_id: str, name: str, model_id: str | None, prompt_id: str | None, description: str) -> str:
    """Register a PEFT adapter on the Hugging Face Hub on its base model."""
    return _registered(
        services,
        AddAdapterRequest(
            name=name,
            model_id=model_id or "",
            type="huggingface",
            huggingface_name=hub_id.strip() or None,
            prompt_id=prompt_id or None,
            description=description,
        ),
    )


@shows_errors
def remove_adapter(services: Services, adapter_id: str | None, confirmed: bool) -> tuple[str, None, bool]:
    """Forget an adapter (``confirmed`` must be true); its files stay where they are."""
    check_removal(adapter_id, confirmed, "an adapter")
    services.adapters.remove(adapter_id)
    return "Removed the adapter from the registry; its files were left where they are.", None, False


def render(services: Services) -> None:
    with gr.Tab("Adapters", id="adapters") as tab:
        with gr.Accordion("Register an adapter", open=True):
            with gr.Row():
                name = gr.Textbox(label="Name")
                base_model = Picker(label="Base model", choices=[], value=None)
                prompt = Picker(label="Prompt it was trained with (optional)", choices=[], value=None)
            description = gr.Textbox(label="Description")
            with gr.Tabs():
                with gr.Tab("Local directory", id="adapter-local"):
                    path = gr.Textbox(label="Directory with adapter_config.json", placeholder="/adapters/my-lora")
                    path_button = gr.Button("Register the directory", variant="primary")
                with gr.Tab("Hugging Face Hub", id="adapter-hub"):
                    hub_id = gr.Textbox(label="Adapter id", placeholder="user/my-lora")
                    hub_button = gr.Button("Register from the Hub", variant="primary")
            register_status = gr.Markdown()
        table = gr.Dataframe(
            label="Adapters (click a row to choose it)", interactive=False, wrap=True, max_height=360, column_widths=COLUMN_WIDTHS
        )
        chosen = Picker(label="Adapter", choices=[], value=None)
        with gr.Accordion("Remove the chosen adapter", open=False):
            confirm = gr.Checkbox(label="Yes, forget this adapter")
            remove_button = gr.Button("Remove adapter", variant="stop")
            remove_status = gr.Markdown()

    refresh = bind(list_adapters, services)
    outputs = [table, chosen, base_model, prompt]
    on_show(tab, refresh, outputs, api_name="list_adapters")
    path_button.click(
        bind(register_local, services),
        [path, name, base_model, prompt, description],
        register_status,
        api_name="register_adapter_local",
    ).success(refresh, outputs=outputs, show_progress="hidden", api_visibility=PRIVATE)
    hub_button.click(
        bind(register_hub, services),
        [hub_id, name, base_model, prompt, description],
        register_status,
        api_name="register_adapter_hub",
    ).success(refresh, outputs=outputs, show_progress="hidden", api_visibility=PRIVATE)
    table.select(clicked_id, outputs=chosen, show_progress="hidden", api_visibility=PRIVATE)
    remove_button.click(
        bind(remove_adapter, services), [chosen, confirm], [remove_status, chosen, confirm], api_name="remove_adapter"
    ).success(
        refresh,
        outputs=outputs,
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
