"""Configs: the shipped presets, typed config blobs written in a JSON editor with field help."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields

import gradio as gr
import pandas as pd

from ftapp.prompts import CONFIG_TYPES, SCHEMAS, AddConfigRequest, defaults, help_text
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, check_removal, on_show

LIST_COLUMNS = ["type", "name", "preset", "family", "description", "added", "id"]
COLUMN_WIDTHS = ["15%", "14%", "6%", "8%", "26%", "11%", "20%"]  # keeps empty columns readable
HELP_COLUMNS = ["field", "type", "default", "allowed", "help"]
ALL_TYPES = "all types"


def presets_markdown(services: Services) -> str:
    lines = ["### Presets", "Shipped config sets, selectable when training. They cannot be removed.", ""]
    for preset in services.configs.presets():
        ids = ", ".join(f"{config_type} `{record.id[:8]}`" for config_type, record in preset.configs.items())
        lines.append(f"- **{preset.name}** — {preset.description}  \n  {ids}")
    return "\n".join(lines)


def list_configs(services: Services, config_type: str | None = None) -> tuple[pd.DataFrame, gr.Dropdown]:
    """The stored configs of one type (or "all types"), presets included, and the picker's choices."""
    records = services.configs.list(None if config_type in (None, ALL_TYPES) else config_type)
    rows = [
        {
            "type": r.type,
            "name": r.name,
            "preset": "yes" if r.is_default else "",
            "family": r.model_family,
            "description": r.description,
            "added": r.created_at,
            "id": r.id,
        }
        for r in records
    ]
    choices = [(f"{r.type}: {r.name or r.id[:8]}", r.id) for r in records]
    return frame(rows, LIST_COLUMNS), gr.Dropdown(choices=choices)


def show_presets_and_configs(services: Services) -> tuple[str, pd.DataFrame, gr.Dropdown, str]:
    # The listing shows every type, so the filter is put back to match it.
    return presets_markdown(services), *list_configs(services), ALL_TYPES


def field_help(config_type: str) -> pd.DataFrame:
    """The typed fields of ``config_type``: type, default, allowed values and help (empty if untyped)."""
    schema = SCHEMAS.get(config_type)
    if schema is None:
        return frame([], HELP_COLUMNS)
    helps = help_text(schema)
    rows = []
    for spec in fields(schema):
        meta = spec.metadata
        rows.append(
            {
                "field": spec.name,
                "type": spec.type,
                "default": "" if spec.default is MISSING else json.dumps(spec.default),
                "allowed": ", ".join(meta["choices"]) if meta.get("choices") else _range(meta),
                "help": helps[spec.name],
            }
        )
    return frame(rows, HELP_COLUMNS)


def help_label(config_type: str) -> str:
    if config_type in SCHEMAS:
        return f"Fields of {config_type} (unknown keys are refused)"
    return f"{config_type} configs are not typed: any {'YAML' if config_type == 'axolotl' else 'JSON'} is stored as given"


def _range(meta: dict) -> str:
    low, high = meta.get("minimum"), meta.get("maximum")
    low_sign = ">" if meta.get("exclusive") else "≥"
    parts = ([f"{low_sign} {low}"] if low is not None else []) + ([f"≤ {high}"] if high is not None else [])
    return " and ".join(parts)


def config_template(config_type: str) -> tuple[gr.Code, gr.Dataframe]:
    """The editor prefilled with the type's defaults (a starting point to trim) and its field help."""
    if config_type in SCHEMAS:
        text = json.dumps(defaults(config_type), indent=2)
    else:
        text = "" if config_type == "axolotl" else "{}"
    language = "yaml" if config_type == "axolotl" else "json"
    return gr.Code(value=text, language=language), gr.Dataframe(value=field_help(config_type), label=help_label(config_type))


@shows_errors
def save_config(services: Services, config_type: str, text: str, name: str, model_family: str, description: str) -> str:
    """Store a config of a type (JSON; YAML for axolotl), checked against the type's fields."""
    result = services.configs.add(
        AddConfigRequest(
            type=config_type,
            config=text,
            description=description,
            model_family=model_family.strip(),
            name=name.strip() or None,
        )
    )
    if result.deduplicated:
        return f"{result.notice}. Nothing new was stored."
    return f"Saved {result.record.type} config `{result.record.id}`."


@shows_errors
def show_config(services: Services, config_id: str | None) -> gr.Code:
    """A stored config's content."""
    if not config_id:
        return gr.Code(value="", visible=False)
    record = services.configs.get(config_id)
    if record.type == "axolotl":
        return gr.Code(value=record.config, language="yaml", visible=True)
    return gr.Code(value=json.dumps(record.values, indent=2), language="json", visible=True)


@shows_errors
def remove_config(services: Services, config_id: str | None, confirmed: bool) -> tuple[str, None, bool]:
    """Remove a config (``confirmed`` must be true); presets cannot be removed."""
    check_removal(config_id, confirmed, "a config")
    services.configs.remove(config_id)
    return "Removed the config.", None, False


def render(services: Services) -> None:
    with gr.Tab("Configs", id="configs") as tab:
        presets = gr.Markdown()
        with gr.Accordion("Add a config", open=True):
            with gr.Row():
                config_type = gr.Dropdown(label="Type", choices=list(CONFIG_TYPES), value=CONFIG_TYPES[0])
                name = gr.Textbox(label="Name (optional)")
                model_family = gr.Textbox(label="Model family (optional)", placeholder="llama")
            description = gr.Textbox(label="Description")
            editor = gr.Code(value=json.dumps(defaults(CONFIG_TYPES[0]), indent=2), language="json", label="Config", lines=12, max_lines=24)
            with gr.Row():
                save_button = gr.Button("Save config", variant="primary", scale=0, min_width=180)
                save_status = gr.Markdown()
            help_table = gr.Dataframe(
                field_help(CONFIG_TYPES[0]),
                label=help_label(CONFIG_TYPES[0]),
                interactive=False,
                wrap=True,
                max_height=420,
                column_widths=["18%", "12%", "12%", "22%", "36%"],
            )
        with gr.Row():
            filter_type = gr.Dropdown(label="Show", choices=[ALL_TYPES, *CONFIG_TYPES], value=ALL_TYPES, scale=0, min_width=260)
        table = gr.Dataframe(
            label="Configs (click a row to see it)", interactive=False, wrap=True, max_height=360, column_widths=COLUMN_WIDTHS
        )
        chosen = Picker(label="Config", choices=[], value=None)
        stored = gr.Code(label="Stored content", language="json", interactive=False, max_lines=30, visible=False)
        with gr.Accordion("Remove the chosen config", open=False):
            confirm = gr.Checkbox(label="Yes, remove this config (presets cannot be removed)")
            remove_button = gr.Button("Remove config", variant="stop")
            remove_status = gr.Markdown()

    on_show(tab, bind(show_presets_and_configs, services), [presets, table, chosen, filter_type])
    listing = bind(list_configs, services)
    config_type.change(config_template, config_type, [editor, help_table], show_progress="hidden", api_visibility=PRIVATE)
    # Before the private events that also call list_configs: gradio suffixes a name already taken (list_configs_1).
    filter_type.change(listing, filter_type, [table, chosen], show_progress="hidden", api_name="list_configs")
    save_button.click(
        bind(save_config, services),
        [config_type, editor, name, model_family, description],
        save_status,
        api_name="save_config",
    ).success(listing, filter_type, [table, chosen], show_progress="hidden", api_visibility=PRIVATE)
    table.select(clicked_id, outputs=chosen, show_progress="hidden", api_visibility=PRIVATE)
    chosen.change(bind(show_config, services), chosen, stored, api_name="show_config")
    remove_button.click(
        bind(remove_config, services), [chosen, confirm], [remove_status, chosen, confirm], api_name="remove_config"
    ).success(
        listing,
        filter_type,
        [table, chosen],
        show_progress="hidden",
        api_visibility=PRIVATE,
    )
