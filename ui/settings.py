"""Settings: the Hugging Face token (never shown), where the home keeps things, DB export and import."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import gradio as gr

from ftapp.services import Services
from ui.errors import shows_errors
from ui.tables import frame
from ui.wiring import bind, on_show

REPORT_COLUMNS = ["table", "imported", "duplicates", "duplicate keys (first 10)"]


def token_status(services: Services) -> str:
    """Where the token comes from, never its value."""
    status = services.hf_token.status()
    if status.source == "environment":
        return (
            f"**Token:** set by the environment variable `{status.env_name}`. It takes precedence over a "
            "stored token; unset it to manage the token here."
        )
    if status.source == "file":
        return "**Token:** stored in the home, readable only by your user."
    return "**Token:** none. Gated models and private datasets on the Hub will be refused."


@shows_errors
def save_token(services: Services, token: str) -> tuple[str, str]:
    """Store a Hugging Face token in the home (readable only by your user); it is never shown again."""
    services.hf_token.store(token)
    # The password box is emptied so the token does not stay in the page.
    return token_status(services), ""


def clear_token(services: Services) -> str:
    """Remove the stored Hugging Face token."""
    services.hf_token.clear()
    return token_status(services)


def home_paths(services: Services) -> str:
    settings = services.settings
    rows = [
        ("Home", settings.home),
        ("Database", settings.db_path),
        ("Datasets (copies of imports)", settings.datasets_dir),
        ("Models", settings.models_dir),
        ("Runs", settings.runs_dir),
        ("MLflow tracking", settings.mlflow_tracking_uri),
    ]
    return "### Home\n| | Path |\n|---|---|\n" + "\n".join(f"| {label} | `{path}` |" for label, path in rows)


def show_settings(services: Services) -> tuple[str, str]:
    """Where the Hugging Face token comes from (never its value), and the home's paths."""
    return token_status(services), home_paths(services)


@shows_errors
def export_database(services: Services) -> gr.File:
    """Every registry table as one JSON file (tokens are never in it)."""
    # gradio serves files from the system temp directory; a private folder keeps the export
    # (configs included, secrets scrubbed) away from other local users.
    folder = Path(tempfile.mkdtemp(prefix="ftapp-export-"))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return gr.File(value=str(services.database.export_to(folder / f"ftapp-{stamp}.json")), visible=True)


@shows_errors
def import_database(services: Services, upload: str | None) -> tuple[str, gr.Dataframe]:
    """Add what an export file holds and this database lacks; what exists is left untouched."""
    if not upload:
        raise gr.Error("Upload an export file first.")
    report = services.database.import_from(Path(upload))
    rows = [
        {
            "table": table,
            "imported": report.imported[table],
            "duplicates": report.duplicates[table],
            "duplicate keys (first 10)": ", ".join(report.duplicate_keys.get(table, [])[:10]),
        }
        for table in report.imported
    ]
    summary = f"Imported {report.total_imported} rows; {report.total_duplicates} were already here and were left as they are."
    if report.live_runs_made_history:
        summary += (
            f" {report.live_runs_made_history} queued or running run(s) came in as failed: imported runs are "
            "history, never started or stopped here."
        )
    if report.rerooted:
        summary += (
            f" {len(report.rerooted)} path(s) of the home the export came from now point into this home "
            "(copy its datasets and runs folders here to keep their files)."
        )
    return summary, gr.Dataframe(value=frame(rows, REPORT_COLUMNS), visible=True)


def render(services: Services) -> None:
    with gr.Tab("Settings", id="settings") as tab:
        gr.Markdown("### Hugging Face token")
        status = gr.Markdown()
        with gr.Row(equal_height=True):
            token = gr.Textbox(label="New token", type="password", placeholder="hf_…", scale=3)
            save_button = gr.Button("Save token", variant="primary", scale=0, min_width=160)
            clear_button = gr.Button("Remove stored token", scale=0, min_width=220)
        paths = gr.Markdown()
        gr.Markdown(
            "### Database\nAn export is one JSON file of every registry table; tokens are never in it. "
            "Importing adds what is missing and leaves what exists untouched."
        )
        with gr.Row(equal_height=False):
            with gr.Column():
                export_button = gr.Button("Export the database")
                export_file = gr.File(label="Export", interactive=False, visible=False)
            with gr.Column():
                import_file = gr.File(label="Export file to import", file_types=[".json"], height=150)
                import_button = gr.Button("Import", variant="primary")
        import_summary = gr.Markdown()
        report = gr.Dataframe(label="Import report", interactive=False, max_height=300, visible=False)

    on_show(tab, bind(show_settings, services), [status, paths], api_name="show_settings")
    save_button.click(bind(save_token, services), token, [status, token], show_progress="hidden", api_name="save_token")
    clear_button.click(bind(clear_token, services), outputs=status, show_progress="hidden", api_name="clear_token")
    export_button.click(bind(export_database, services), outputs=export_file, api_name="export_database")
    import_button.click(bind(import_database, services), import_file, [import_summary, report], api_name="import_database")
