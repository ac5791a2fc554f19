"""`ftapp models demo`: builds the kit in a real `python -m trainer demo` child and registers it."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from ftapp.demo_kit import DEMO_DATASET, DEMO_MODEL, DEMO_PROMPT
from ftapp.services import open_services
from ftapp.settings import Settings

pytestmark = pytest.mark.slow  # starts real trainer processes


def test_demo_builds_once_and_registers_model_dataset_prompt(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    home = tmp_path / "home"
    assert main(["--home", str(home), "models", "demo", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["built"] is True
    assert (first["model"]["name"], first["dataset"]["name"], first["prompt"]["name"]) == (DEMO_MODEL, DEMO_DATASET, DEMO_PROMPT)
    assert first["model"]["architecture"] == "LlamaForCausalLM"

    services = open_services(Settings.from_env(home))
    try:
        again = services.demo.install()
        assert again.built is False and again.model.id == first["model"]["id"]
        assert len(services.models.list()) == 1 and len(services.prompts.list()) == 1
        # The demo prompt fits the demo dataset and renders real rows.
        rows = services.prompts.render_preview(
            again.dataset.id, again.prompt.prompt_template, again.prompt.input_template, again.prompt.completion_template
        )
        assert rows and all(r.prompt == r.input + r.completion for r in rows)
        assert not services.is_empty()
    finally:
        services.close()
