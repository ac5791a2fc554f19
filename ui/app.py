"""The page: one tab per resource, in the order a first fine-tune needs them."""

from __future__ import annotations

import gradio as gr

from ftapp.services import Services
from ui import adapters, compare, configs, datasets, evaluate, export, home, models, prompts, runs, serve, settings, train


def build_app(services: Services) -> gr.Blocks:
    # No analytics: the app runs offline and must not phone home at start.
    with gr.Blocks(title="ftapp — fine-tuning studio", analytics_enabled=False) as app:
        gr.Markdown("## ftapp — fine-tuning studio")
        with gr.Tabs():
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
    return app
