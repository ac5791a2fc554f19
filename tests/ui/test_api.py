"""The app's HTTP API as a harness meets it: gradio_client against the real app on a local port.

The endpoints are the ones README's API section lists, with the parameters it names; its example
runs as written (only the URL differs) in a fresh client that never opened a tab.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import gradio as gr
import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.demo_kit import DEMO_DATASET, DEMO_MODEL, DEMO_PROMPT
from ftapp.models import AddModelRequest
from ftapp.prompts import AddPromptRequest
from ftapp.services import Services
from ui.app import build_app
from ui.choices import Picker
from ui.train_form import TrainForm

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:7860/"


def api_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## The app's API (gradio_client)") :].split("\n## ", 1)[0]


def code_block(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", api_section(), re.S).group(1)


def documented_endpoints() -> dict[str, list[str]]:
    """``/name(a, b)`` of README's list as {"/name": ["a", "b"]}; ``FORM`` stands for the Train form's fields, alone or
    among others (``/save_preset(FORM, preset_name)``)."""
    listing = code_block("text")
    form = [name.strip() for name in re.search(r"^FORM\s+(.*)", listing, re.M | re.S).group(1).split(",")]
    return {
        f"/{name}": [
            field for p in params.replace("\n", " ").split(",") if p.strip() for field in (form if p.strip() == "FORM" else [p.strip()])
        ]
        for name, params in re.findall(r"/(\w+)\(([^)]*)\)", listing)
    }


@pytest.fixture
def demo(services: Services, demo_kit) -> Services:
    """The offline demo's model, dataset and prompt, registered under their names."""
    model = services.models.add(AddModelRequest(type="project", name=DEMO_MODEL, location=str(demo_kit.model_dir)))
    dataset = services.datasets.add(AddDatasetRequest(name=DEMO_DATASET, location=str(demo_kit.dataset_path)))
    services.prompts.add(
        AddPromptRequest(
            name=DEMO_PROMPT,
            dataset_id=dataset.id,
            prompt_template=demo_kit.prompt["prompt_template"],
            input_template=demo_kit.prompt["input_template"],
            completion_template=demo_kit.prompt["completion_template"],
        )
    )
    assert model.id and dataset.id
    return services


@pytest.fixture
def app_url(demo: Services) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(demo)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_the_public_endpoints_are_the_documented_ones_with_named_parameters(services: Services) -> None:
    endpoints = build_app(services).get_api_info()["named_endpoints"]

    assert {name: [p["parameter_name"] for p in e["parameters"]] for name, e in endpoints.items()} == documented_endpoints()
    assert documented_endpoints()["/start_training"] == [f.name for f in fields(TrainForm)]


def test_the_readme_example_runs_in_a_fresh_client(app_url: str, demo: Services) -> None:
    example = code_block("python")
    assert README_URL in example
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example.replace(README_URL, app_url), "README.md", "exec"), {"__name__": "readme_example"})

    out = printed.getvalue()
    assert "### Preflight: ✅ fits on cpu" in out and "### ⏳ Queued run" in out
    [run] = demo.runs.list()
    assert (run.name, run.status) == ("intents-v1", "queued") and f"Run id `{run.id}`" in out
    assert "⏳ queued" in out and "waiting for its devices" in out  # the newest run, as /show_run draws it


def test_an_id_the_database_lacks_is_refused_by_the_service_with_its_rule(app_url: str) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="not found"):
        client.predict(model_id="0" * 32, dataset_id="x", prompt_id="none", adapter_name="a", api_name="/preflight")


def test_a_picker_takes_any_string_but_nothing_else() -> None:
    one, many = Picker(choices=[], label="Model"), Picker(choices=[], value=[], multiselect=True, label="Adapters")

    assert one.preprocess("an-id-it-was-never-offered") == "an-id-it-was-never-offered"
    assert many.preprocess(["a", "b"]) == ["a", "b"] and one.preprocess(None) is None
    for picker, payload in ((one, 5), (one, ["a"]), (many, "a"), (many, ["a", 1])):
        with pytest.raises(gr.Error, match="expected"):
            picker.preprocess(payload)
    assert one.get_block_name() == "dropdown" and one.api_info() == {"type": "string"}
