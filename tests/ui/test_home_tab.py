"""The Home tab's summaries and the page as a whole."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ftapp.compare import CompareRequest
from ftapp.datasets.service import AddDatasetRequest
from ftapp.runs.machine import GpuInfo, Machine
from ftapp.services import Services
from ftapp.shipping import ServeRequest
from storage.types import utc_now
from ui import build_app, home, train


def test_summaries_count_the_registry_and_push_the_demo_when_empty(services: Services, alpaca: Path) -> None:
    machine, registry, demo_button = home.summaries(services)

    assert f"**CPU cores:** {os.cpu_count()}" in machine
    assert "| Datasets | 0 |" in registry and "registry is empty" in registry
    assert demo_button.variant == "primary"

    services.datasets.add(AddDatasetRequest(location=str(alpaca)))
    _, registry, demo_button = home.summaries(services)

    assert "| Datasets | 1 |" in registry and "registry is empty" not in registry
    assert demo_button.variant == "secondary"


def test_the_page_has_every_resource_tab_and_nothing_else(services: Services) -> None:
    app = build_app(services)

    labels = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert labels[:1] == ["Home"]
    top_level = {"Home", "Datasets", "Models", "Prompts", "Configs", "Train", "Runs", "Adapters", "Settings"}
    assert top_level <= set(labels)
    assert labels.index("Configs") < labels.index("Train") < labels.index("Runs") < labels.index("Adapters")
    assert labels.index("Adapters") < labels.index("Export") < labels.index("Serve") < labels.index("Settings")
    assert "Evaluation" not in labels  # the tab is "Evaluate": no stubs under other names


def test_every_child_of_a_tab_bar_is_a_tab(services: Services) -> None:
    # The browser numbers a tab bar's children; anything else there (a gr.State made outside its
    # tab, say) takes a slot and the tabs after it show another tab's label.
    config = build_app(services).get_config_file()
    types = {component["id"]: component["type"] for component in config["components"]}

    def tab_bars(node: dict) -> list[dict]:
        children = node.get("children", [])
        found = [node] if types.get(node["id"]) == "tabs" else []
        return found + [bar for child in children for bar in tab_bars(child)]

    bars = tab_bars(config["layout"])
    assert len(bars) == 4  # the page's and the import/register choices of datasets, models, adapters
    for bar in bars:
        assert {types[child["id"]] for child in bar["children"]} == {"tabitem"}


def test_the_demo_button_registers_a_kit_built_earlier(services: Services) -> None:
    # A kit as `python -m trainer demo` leaves it, minus the weights: registering reads only
    # config.json, the dataset file and the prompt, and building takes minutes on a CPU.
    kit = services.demo.kit_dir
    (kit / "model").mkdir(parents=True)
    (kit / "model" / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                "vocab_size": 512,
            }
        ),
        encoding="utf-8",
    )
    rows = [
        {"request": "my card was charged twice", "intent": "payment_issue"},
        {"request": "where is order 123", "intent": "delivery_time"},
    ]
    (kit / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prompt = {"prompt_template": "Q: {request}\nA: {intent}", "input_template": "Q: {request}\nA: ", "completion_template": "{intent}"}
    (kit / "demo_kit.json").write_text(
        json.dumps(
            {
                "model_dir": str(kit / "model"),
                "dataset_path": str(kit / "dataset.jsonl"),
                "prompt": prompt,
            }
        ),
        encoding="utf-8",
    )

    message = home.build_demo(services)

    assert message.startswith("The demo model existed already; registered")
    assert "`demo-tiny-llama` (LlamaForCausalLM" in message
    assert "`demo-support-intents` (2 rows" in message and "`demo-intent-prompt`" in message
    assert home.build_demo(services) == message  # a second click registers nothing new
    assert (len(services.models.list()), len(services.datasets.list()), len(services.prompts.list())) == (1, 1, 1)


def test_gpus_are_listed_with_the_runs_that_hold_them(services: Services, monkeypatch) -> None:
    machine = Machine(
        gpus=(GpuInfo(0, "NVIDIA H200", 143771, 40960), GpuInfo(1, "NVIDIA H200", 143771, 0)), cpu_count=32, memory_available_mib=200_000
    )
    monkeypatch.setattr(services, "machine", lambda: machine)
    running = [
        SimpleNamespace(id="abcdef0123", name="big-run", kind="finetune", gpus="0"),
        SimpleNamespace(id="9876543210", name="cpu-run", kind="finetune", gpus="cpu"),
    ]

    text = home.machine_summary(services, running)

    assert "| 0 | NVIDIA H200 | 40.0 of 140.4 GiB | big-run (`abcdef01`) |" in text
    assert "| 1 | NVIDIA H200 | 0.0 of 140.4 GiB | free |" in text
    assert "**Running on the CPU:** cpu-run (`98765432`)" in text


def test_activity_shows_queued_runs_and_says_when_nothing_happens(services: Services, train_form) -> None:
    quiet = home.activity_summary(services)
    assert "Nothing is training or queued" in quiet and "None yet" in quiet

    train.start_training(services, train_form(adapter_name="waiting"))

    busy = home.activity_summary(services)
    assert "| ⏳ queued | waiting (`" in busy and "| cpu |" in busy


def test_endpoints_and_compare_workers_are_listed_apart_from_training(services: Services, registered) -> None:
    comparison = services.comparisons.start(CompareRequest(model_id=registered.model_id, prompt="hello"))
    endpoint = services.serving.submit(ServeRequest(registered.model_id, "", gpus="cpu", engine="transformers"))
    with services.db.transaction() as tx:
        # An idle worker that answered two comparisons, and an endpoint that said where it listens.
        tx.runs.update(comparison.worker_run_id, status="running", started_at=utc_now(), gpus="cpu", step=2, started_payload="{}")
        tx.runs.update(endpoint.id, status="running", started_at=utc_now(), gpus="cpu", started_payload='{"url": "http://127.0.0.1:4321"}')

    text = home.activity_summary(services)

    training, rest = text.split("### Serving / workers")
    workers = rest.split("### Recent adapters")[0]
    assert "Nothing is training or queued" in training and "step 2" not in training
    assert f"| compare worker (**Compare** tab) | compare · tiny (`{comparison.worker_run_id[:8]}`) | ready · 2 answered |" in workers
    assert f"| endpoint (**Serve** tab) | serve tiny (`{endpoint.id[:8]}`) | 🟢 serving at `http://127.0.0.1:4321/v1` |" in workers
