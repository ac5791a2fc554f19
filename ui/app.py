"""The page: one tab per resource, in the order a first fine-tune needs them."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftapp.demo import DemoCaps
from ftapp.services import Services
from ftapp.visitors import demo_services
from ui import adapters, compare, configs, datasets, evaluate, export, home, models, prompts, runs, serve, settings, train
from ui.page_address import KEEP_SHOWN_TAB, RESTORED, restore_tab, tab_elem_id
from ui.wiring import PRIVATE


def demo_notice(caps: DemoCaps) -> str:
    return (
        f"**Public demo.** Upload your own data (CSV, JSON, JSONL, Parquet; up to {caps.max_dataset_rows:,} rows), "
        f"train a LoRA adapter on the demo model (up to {caps.max_train_steps} steps, {caps.max_runs_per_visitor} "
        "job at a time), evaluate, compare and download it. What you upload and train is visible to you "
        "only (this browser keeps a key in a cookie); the demo model, dataset and prompt are shared. "
        "No server paths, no Hub downloads or pushes, no custom code."
    )


def build_app(services: Services) -> gr.Blocks:
    demo = services.settings.demo
    if demo:
        # The page is built with nobody's view; every event then gets its visitor's own (``ui.visitors.services_for``).
        services = demo_services(services)
    # No analytics: the app runs offline and must not phone home at start.
    with gr.Blocks(title="ftapp — fine-tuning studio", analytics_enabled=False) as app:
        gr.Markdown("## ftapp — fine-tuning studio")
        if demo:
            gr.Markdown(demo_notice(services.visitor.caps), elem_id="demo-notice")  # type: ignore[union-attr]
        with gr.Tabs() as tabs:
            home.render(services)
            datasets.render(services)
            models.render(services)
            prompts.render(services)
            configs.render(services)
            train.render(services)
            runs.render(services)
            adapters.render(services)
            compare.render(services)
            evaluate.render(services)
            export.render(services)
            serve.render(services)
            settings.render(services)
        keep_tab_in_address(app, tabs)
    return app


def keep_tab_in_address(app: gr.Blocks, tabs: gr.Tabs) -> None:
    """Selecting a tab writes it into the address; loading the page selects the tab the address names."""
    tab_ids = [child.id for child in tabs.children if isinstance(child, gr.Tab)]
    for child in tabs.children:
        if isinstance(child, gr.Tab):
            child.elem_id = tab_elem_id(child.id)
            child.select(None, js=KEEP_SHOWN_TAB)

    def reopen_tab() -> Any:  # the tab bar's update, or gr.skip()
        return restore_tab(tab_ids)

    app.load(reopen_tab, outputs=tabs, js=RESTORED, show_progress="hidden", api_visibility=PRIVATE)
