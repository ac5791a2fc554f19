"""Model registration: local directories, the offline Hub cache, the local MLflow registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftapp.errors import ConflictError, ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest


def fake_hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
    """The on-disk layout huggingface_hub writes for a downloaded model repo."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    return root


def test_local_directory_records_architecture_without_loading_weights(services, demo_kit):
    record = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    config = json.loads((demo_kit.model_dir / "config.json").read_text())
    assert record.architecture == "LlamaForCausalLM" and record.model_type == config["model_type"]
    # The estimate from config.json matches the real parameter count of the demo model.
    assert record.num_parameters == pytest.approx(demo_kit.num_parameters, rel=0.02)


def test_hub_id_resolves_from_the_local_cache_when_offline(services, demo_kit, tmp_path, monkeypatch):
    cache = fake_hub_cache(tmp_path / "hub", "acme/tiny-llama", demo_kit.model_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    record = services.models.add(AddModelRequest(huggingface_name="acme/tiny-llama"))
    assert (record.name, record.type, record.architecture) == ("acme/tiny-llama", "huggingface", "LlamaForCausalLM")
    assert record.source == "acme/tiny-llama"


def test_offline_hub_miss_says_the_network_is_needed(services, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ValidationError, match="MD-002: .*Hub cannot be reached"):
        services.models.add(AddModelRequest(huggingface_name="meta-llama/Llama-3.2-1B"))
    assert services.models.list() == []


def test_registered_mlflow_model_resolves_to_its_directory(services, demo_kit):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=services.settings.mlflow_tracking_uri, registry_uri=services.settings.mlflow_tracking_uri)
    client.create_registered_model("tiny-registered")
    client.create_model_version("tiny-registered", source=str(demo_kit.model_dir))
    record = services.models.add(AddModelRequest(type="model_registry", name="from-registry", registry_name="tiny-registered"))
    assert (record.registry_version, record.location) == ("1", str(demo_kit.model_dir))


def test_gated_licence_acceptance_is_recorded(services, demo_kit):
    record = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    assert record.license_accepted_at is None
    assert services.models.accept_license(record.id).license_accepted_at is not None


def test_a_base_model_with_adapters_is_not_removed(services, demo_kit, tmp_path):
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "tiny"}))
    record = services.adapters.add(AddAdapterRequest(name="lora", model_id=model.id, location=str(adapter)))
    assert (record.peft_type, record.base_model_name) == ("LORA", "tiny")
    with pytest.raises(ConflictError, match="base of adapters lora"):
        services.models.remove(model.id)
    services.adapters.remove(record.id)
    services.models.remove(model.id)
    assert services.models.list() == []
