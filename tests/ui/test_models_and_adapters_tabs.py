"""The Models and Adapters tabs on real directories: register, lineage, licence, removal order."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from ftapp.services import Services
from ui import adapters, models

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1000,
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-llama"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(LLAMA_CONFIG), encoding="utf-8")
    return path


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-lora"
    path.mkdir()
    (path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "tiny-llama", "r": 8}),
        encoding="utf-8",
    )
    return path


def test_register_a_local_model_and_list_it(services: Services, model_dir: Path) -> None:
    status, model_id = models.register_local(services, str(model_dir), "", "for tests")

    assert "LlamaForCausalLM" in status
    table, picker = models.list_models(services, model_id)
    row = table.iloc[0]
    assert (row["name"], row["type"], row["source"], row["id"]) == (str(model_dir), "project", str(model_dir), model_id)
    assert row["parameters"].endswith("K")
    assert picker.value == model_id
    details, accept = models.describe_model(services, model_id)
    assert "llama" in details and accept.interactive is False  # not gated: nothing to accept


def test_a_directory_without_config_is_refused(services: Services, tmp_path: Path) -> None:
    with pytest.raises(gr.Error) as caught:
        models.register_local(services, str(tmp_path), "empty", "")

    assert "MD-004" in caught.value.message
    assert services.models.list() == []


def test_the_hub_is_not_reached_offline(services: Services) -> None:
    with pytest.raises(gr.Error) as caught:
        models.register_hub(services, "someone/not-cached-model", "", "")

    assert "MD-002" in caught.value.message
    assert services.models.list() == []


def test_adapter_lineage_and_removal_order(services: Services, model_dir: Path, adapter_dir: Path) -> None:
    _, model_id = models.register_local(services, str(model_dir), "tiny", "")

    status = adapters.register_local(services, str(adapter_dir), "tiny-lora", model_id, None, "")

    assert "tiny-lora" in status and "LORA" in status
    table, chosen, base_models, prompt_choices = adapters.list_adapters(services)
    row = table.iloc[0]
    assert (row["name"], row["base model"], row["peft"], row["trained on (adapter config)"]) == ("tiny-lora", "tiny", "LORA", "tiny-llama")
    assert base_models.choices == [("tiny", model_id)] and prompt_choices.choices == []
    with pytest.raises(gr.Error, match="tiny-lora"):  # the model is still the base of the adapter
        models.remove_model(services, model_id, True)

    adapter_id = chosen.choices[0][1]
    adapters.remove_adapter(services, adapter_id, True)
    models.remove_model(services, model_id, True)
    assert services.adapters.list() == [] and services.models.list() == []


def test_an_adapter_needs_a_base_model(services: Services, adapter_dir: Path) -> None:
    with pytest.raises(gr.Error) as caught:
        adapters.register_local(services, str(adapter_dir), "", None, None, "")

    assert "AD-001" in caught.value.message and "AD-002" in caught.value.message
    assert services.adapters.list() == []
