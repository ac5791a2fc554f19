"""Datasets: import from an upload, a local path or the Hub; browse real rows; remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from ftapp.datasets import FILE_TYPES, AddDatasetRequest, accepted_files, type_label
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors
from ui.tables import clicked_id, frame
from ui.wiring import PRIVATE, bind, check_removal, on_show, picker

PAGE_SIZE = 10
LIST_COLUMNS = ["name", "format", "rows", "type", "source", "added", "id"]
# Without widths, an empty column shrinks until its header wraps one letter per line.
COLUMN_WIDTHS = ["17%", "8%", "6%", "12%", "26%", "11%", "20%"]
# What each detected layout means for training, in the words a user needs to pick a prompt.
FORMAT_NOTES = {
    "alpaca": "instruction / input / output columns; a prompt template can be generated from them",
    "messages": "chat turns in a `messages` column (role / content)",
    "sharegpt": "chat turns in a `conversations` column (from / value)",
    "preference": "`chosen` / `rejected` pairs, for DPO",
    "plain": "plain columns; map them to a prompt template in the Prompts tab",
}


def source_label(record) -> str:
    """Where the data came from, as the user would name it."""
    if record.huggingface_name:
        return record.huggingface_name
    return record.source or record.location or ""


def list_datasets(services: Services, selected: str | None = None) -> tuple[pd.DataFrame, gr.Dropdown]:
    """The registered datasets (name, format, rows, source, id) and the picker's choices."""
    records = services.datasets.list()
    rows = [
        {
            "name": r.name,
            "format": r.format,
            "rows": r.num_rows,
            "type": type_label(r.type),
            "source": source_label(r),
            "added": r.created_at,
            "id": r.id,
        }
        for r in records
    ]
    choices = [(r.name, r.id) for r in records]
    return frame(rows, LIST_COLUMNS), picker(choices, selected)


def _imported(services: Services, request: AddDatasetRequest) -> tuple[str, str]:
    record = services.datasets.add(request)
    return (
        f"Imported **{record.name}**: {record.num_rows if record.num_rows is not None else 'unknown number of'} "
        f"rows, format {record.format}.",
        record.id,
    )


@shows_errors
def import_upload(services: Services, upload: str | None, name: str, description: str) -> tuple[str, str]:
    """Import an uploaded CSV, JSON, JSONL or Parquet file (copied into the home)."""
    # An absent upload (the picker refused the file, or none was chosen) still goes to the service, which asks for one (DS-003).
    origin = f"upload: {Path(upload).name}" if upload else None
    return _imported(
        services,
        AddDatasetRequest(name=name.strip(), location=upload or None, description=description, origin=origin, from_upload=True),
    )


@shows_errors
def import_path(services: Services, path: str, name: str, description: str) -> tuple[str, str]:
    """Import a file or Hugging Face dataset directory on the server (copied into the home)."""
    return _imported(services, AddDatasetRequest(name=name.strip(), location=path.strip() or None, description=description))


@shows_errors
def import_hub(services: Services, hub_id: str, hf_config: str, hf_split: str, name: str, description: str) -> tuple[str, str]:
    """Import a dataset from the Hugging Face Hub (one config and split)."""
    return _imported(
        services,
        AddDatasetRequest(
            name=name.strip(),
            huggingface_name=hub_id.strip() or None,
            hf_config=hf_config.strip() or None,
            hf_split=hf_split.strip() or None,
            description=description,
        ),
    )


@shows_errors
def describe_dataset(services: Services, dataset_id: str | None) -> tuple[str, gr.Column]:
    """A dataset's format, rows, source and column statistics (markdown)."""
    if not dataset_id:
        return "", gr.Column(visible=False)
    record = services.datasets.get(dataset_id)
    source = source_label(record)
    if record.hf_config or record.hf_split:
        source += f" (config {record.hf_config or 'default'}, split {record.hf_split or 'train'})"
    lines = [
        f"### {record.name}",
        f"**Format:** {record.format} — {FORMAT_NOTES.get(record.format, '')}  ",
        f"**Rows:** {record.num_rows if record.num_rows is not None else 'unknown'}  ",
        f"**Source:** `{source}`  ",
    ]
    if record.location:
        lines.append(f"**Stored at:** `{record.location}`  ")
    if record.description:
        lines.append(f"**Description:** {record.description}")
    stats = {s.column: s for s in services.datasets.column_stats(dataset_id)}
    sampled = next(iter(stats.values())).rows if stats else 0
    lines += [
        "",
        f"Column statistics over the first {sampled:,} rows:",
        "",
        "| Column | Kind | Empty | Mean length | Max length |",
        "|---|---|---|---|---|",
    ]
    for column, kind in record.feature_types.items():
        st = stats.get(column)
        empty = f"{st.empty:,} ({st.empty / st.rows:.0%})" if st and st.rows else "–"
        lengths = (f"{st.mean_chars:,.0f} | {st.max_chars:,}") if st else "– | –"
        lines.append(f"| {column} | {kind} | {empty} | {lengths} |")
    return "\n".join(lines), gr.Column(visible=True)


class Page(NamedTuple):
    """One page of a dataset's rows."""

    rows: Any  # a gr.Dataframe
    label: str  # "Rows 11–20 of 1,000"
    offset: int
    total: int | None


def _page(services: Services, dataset_id: str | None, offset: int) -> Page:
    if not dataset_id:
        return Page(rows=gr.Dataframe(value=None), label="", offset=0, total=None)
    page = services.datasets.preview(dataset_id, offset, PAGE_SIZE)
    columns = list(dict.fromkeys(key for row in page.rows for key in row))
    # Equal widths: otherwise the first long text column takes the row and the rest scroll away.
    table = gr.Dataframe(value=frame(page.rows, columns), column_widths=[f"{100 / max(len(columns), 1):.1f}%"] * len(columns))
    if not page.rows:
        return Page(rows=table, label=f"No rows from {offset + 1} on.", offset=page.offset, total=page.total)
    last = page.offset + len(page.rows)
    of_total = f" of {page.total:,}" if page.total is not None else ""
    return Page(rows=table, label=f"Rows {page.offset + 1}–{last}{of_total}", offset=page.offset, total=page.total)


@shows_errors
def first_page(services: Services, dataset_id: str | None) -> Page:
    """The first rows of a dataset, as stored."""
    return _page(services, dataset_id, 0)


@shows_errors
def next_page(services: Services, dataset_id: str | None, offset: int, total: int | None) -> Page:
    # With an unknown total (some Hub splits) the user may step past the end and sees "No rows".
    at_end = total is not None and offset + PAGE_SIZE >= total
    return _page(services, dataset_id, offset if at_end else offset + PAGE_SIZE)


@shows_errors
def previous_page(services: Services, dataset_id: str | None, offset: int) -> Page:
    return _page(services, dataset_id, max(0, offset - PAGE_SIZE))


@shows_errors
def remove_dataset(services: Services, dataset_id: str | None, confirmed: bool, with_prompts: bool) -> tuple[str, None, bool]:
    """Remove a dataset and its copied file (``confirmed`` must be true); optionally the prompts written for it."""
    check_removal(dataset_id, confirmed, "a dataset")
    removed_prompts = services.datasets.remove(dataset_id, remove_prompts=with_prompts)
    extra = f" and its prompts {', '.join(removed_prompts)}" if removed_prompts else ""
    return f"Removed the dataset{extra}.", None, False


def render(services: Services) -> None:
    with gr.Tab("Datasets", id="datasets") as tab:
        with gr.Accordion("Import a dataset", open=True):
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="defaults to the file name or Hub id")
                description = gr.Textbox(label="Description")
            with gr.Tabs():
                with gr.Tab("Upload a file", id="dataset-upload"):
                    upload = gr.File(label=accepted_files(), file_types=list(FILE_TYPES), height=150, elem_id="dataset-upload-file")
                    upload_button = gr.Button("Import the upload", variant="primary", elem_id="dataset-upload-import")
                # The public demo takes uploads only (its services refuse paths and Hub ids anyway).
                with gr.Tab("Local path", id="dataset-path", visible=not services.settings.demo):
                    path = gr.Textbox(label="File or Hugging Face dataset directory on this machine", placeholder="/data/train.jsonl")
                    path_button = gr.Button("Import from path", variant="primary")
                with gr.Tab("Hugging Face Hub", id="dataset-hub", visible=not services.settings.demo):
                    with gr.Row():
                        hub_id = gr.Textbox(label="Dataset id", placeholder="tatsu-lab/alpaca", scale=2)
                        hf_config = gr.Textbox(label="Config", placeholder="default")
                        hf_split = gr.Textbox(label="Split", value="train")
                    hub_button = gr.Button("Import from the Hub", variant="primary")
            import_status = gr.Markdown(elem_id="dataset-import-status")
        table = gr.Dataframe(
            label="Datasets (click a row to preview it)",
            interactive=False,
            wrap=True,
            max_height=320,
            column_widths=COLUMN_WIDTHS,
            elem_id="datasets-table",
        )
        chosen = Picker(label="Dataset", choices=[], value=None)
        details = gr.Markdown()
        # Hidden until a dataset is chosen: an empty frame would show placeholder headers "1 2 3".
        with gr.Column(visible=False) as rows_view:
            preview = gr.Dataframe(label="Rows", interactive=False, wrap=True, max_height=600)
            with gr.Row(equal_height=True):
                previous_button = gr.Button("◀ Previous", size="sm", scale=0, min_width=120)
                next_button = gr.Button("Next ▶", size="sm", scale=0, min_width=120)
                page_label = gr.Markdown()
        # Kept inside the tab: a State placed directly in gr.Tabs counts as a tab in the browser
        # and shifts the labels of the tabs after it.
        offset, total, imported_id = gr.State(0), gr.State(None), gr.State(None)
        with gr.Accordion("Remove the chosen dataset", open=False):
            confirm = gr.Checkbox(label="Yes, remove this dataset and the copy of its file in the home")
            with_prompts = gr.Checkbox(label="Also remove the prompts written for it")
            remove_button = gr.Button("Remove dataset", variant="stop")
            remove_status = gr.Markdown()

    refresh = bind(list_datasets, services)
    on_show(tab, refresh, [table, chosen], api_name="list_datasets")
    for button, handler, inputs in (
        (upload_button, import_upload, [upload, name, description]),
        (path_button, import_path, [path, name, description]),
        (hub_button, import_hub, [hub_id, hf_config, hf_split, name, description]),
    ):
        button.click(bind(handler, services), inputs, [import_status, imported_id], api_name=handler.__name__).success(
            refresh,
            inputs=imported_id,
            outputs=[table, chosen],
            show_progress="hidden",
            api_visibility=PRIVATE,
        )
    table.select(clicked_id, outputs=chosen, show_progress="hidden", api_visibility=PRIVATE)
    chosen.change(bind(describe_dataset, services), chosen, [details, rows_view], api_name="describe_dataset")
    page_outputs = Page(rows=preview, label=page_label, offset=offset, total=total)
    chosen.change(bind(first_page, services), chosen, page_outputs, api_name="preview_dataset")
    next_button.click(bind(next_page, services), [chosen, offset, total], page_outputs, api_visibility=PRIVATE)
    previous_button.click(bind(previous_page, services), [chosen, offset], page_outputs, api_visibility=PRIVATE)
    remove_button.click(
        bind(remove_dataset, services),
        [chosen, confirm, with_prompts],
        [remove_status, chosen, confirm],
        api_name="remove_dataset",
    ).success(refresh, outputs=[table, chosen], show_progress="hidden", api_visibility=PRIVATE)
