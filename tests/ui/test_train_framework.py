"""The Train tab's Framework choice: TRL, or Axolotl training a stored YAML config with the form's model and data."""

from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr
import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.prompts.configs import AddConfigRequest
from ftapp.services import Services
from ui import train, train_framework
from ui.app import build_app
from ui.train_form import NO_PROMPT

CONFIG = "datasets:\n  - path: train.jsonl\n    type: alpaca\nadapter: lora\nlora_r: 8\nmicro_batch_size: 2\nmax_steps: 3\n"


def test_the_axolotl_config_picker_lists_stored_axolotl_configs_and_shows_with_axolotl(services: Services) -> None:
    mine = services.configs.add(AddConfigRequest(type="axolotl", config=CONFIG, name="mine")).record
    picker = train_framework.axolotl_configs(services, mine.id)
    assert ("mine", mine.id) in picker.choices and picker.value == mine.id
    assert "axolotl lora template" in [label for label, _ in picker.choices]  # shipped with every home
    assert train_framework.axolotl_configs(services, "gone").value == picker.choices[0][1]
    assert train_framework.show_framework("axolotl").visible is True
    assert train_framework.show_framework("trl").visible is False
    widgets = {b.elem_id for b in build_app(services).blocks.values() if getattr(b, "elem_id", None)}
    assert {"train-framework", "train-axolotl-config"} <= widgets


def test_an_axolotl_run_from_the_tab_trains_the_yaml_not_the_fields(
    services: Services, train_form, alpaca: Path, monkeypatch, stand_in_axolotl_python: Path
) -> None:
    monkeypatch.setenv("FTAPP_AXOLOTL_PYTHON", str(stand_in_axolotl_python))
    config = services.configs.add(AddConfigRequest(type="axolotl", config=CONFIG, name="mine")).record
    dataset = services.datasets.add(AddDatasetRequest(location=str(alpaca))).id
    form = train_form(framework="axolotl", axolotl_config_id=config.id, dataset_id=dataset, prompt_id=NO_PROMPT, lora_r=64)

    train.start_training(services, form)

    [run] = services.runs.list()
    spec = json.loads(run.spec)
    assert (spec["framework"], spec["axolotl_config"]["max_steps"], spec["axolotl_config"]["lora_r"], spec["lora"]) == ("axolotl", 3, 8, {})
    assert services.prompts.get(run.prompt_id).prompt_template.startswith("<Instruction>: {instruction}")  # generated


def test_without_axolotl_the_tab_says_how_to_install_it(services: Services, train_form, monkeypatch) -> None:
    monkeypatch.delenv("FTAPP_AXOLOTL_PYTHON", raising=False)
    template = services.configs.list("axolotl")[0]
    with pytest.raises(gr.Error) as refused:
        train.preflight(services, train_form(framework="axolotl", axolotl_config_id=template.id))
    message = html.unescape(refused.value.message)
    assert "FT-001c" in message and "pip install axolotl==0.19.0" in message
