"""The Train tab's framework: ftapp's own TRL recipes, or Axolotl training a stored YAML config (seed 001).

With Axolotl the YAML decides the hyper-parameters and the training mode: the form's model, dataset, prompt (optional:
one is generated from the YAML's dataset type), adapter name and devices still apply; its hyper-parameter fields do not.
"""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr

from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors

NO_CONFIG = "none"  # config ids are UUIDs, so this cannot name a real config; the API's default for TRL runs
FRAMEWORKS = [("TRL (ftapp's recipes)", "trl"), ("Axolotl (a stored YAML config)", "axolotl")]
AXOLOTL_HELP = (
    "The stored axolotl config the run trains (Configs tab, type axolotl). Its YAML decides the hyper-parameters and "
    "LoRA/QLoRA/full; the run writes in the model, the dataset and its own folders. Needs Axolotl installed for the "
    "trainer: Preflight says how when it is not."
)


class FrameworkWidgets(NamedTuple):
    framework: gr.Radio
    axolotl_config: gr.Dropdown


def render_framework() -> FrameworkWidgets:
    framework = gr.Radio(
        label="Framework",
        choices=FRAMEWORKS,
        value="trl",
        elem_id="train-framework",
        info="TRL runs ftapp's own recipes with the fields below; Axolotl trains a stored YAML config instead.",
    )
    axolotl_config = Picker(
        label="Axolotl config",
        choices=[("none", NO_CONFIG)],
        value=NO_CONFIG,
        visible=False,
        elem_id="train-axolotl-config",
        info=AXOLOTL_HELP,
    )
    return FrameworkWidgets(framework, axolotl_config)


@shows_errors
def axolotl_configs(services: Services, selected: str | None) -> gr.Dropdown:
    """The stored axolotl configs, keeping the one chosen while it exists."""
    choices = [(record.name or record.description or record.id[:8], record.id) for record in services.configs.list("axolotl")]
    ids = [value for _, value in choices]
    return gr.Dropdown(choices=choices, value=selected if selected in ids else (ids[0] if ids else None))


def show_framework(framework: str) -> gr.Dropdown:
    return gr.Dropdown(visible=framework == "axolotl")
