"""`export register` makes MLflow models: MLflow's own loaders take a registered model and a registered adapter back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.shipping.export_request import ExportRequest


def register(services, model_id: str, adapter_id: str, name: str):
    run = services.exports.submit(ExportRequest(model_id, adapter_id, name, action="register"))
    final = services.runs.wait(run.id, timeout_s=600)
    assert final.status == "succeeded", final.error_text
    return services.exports.result(run.id).registered


@pytest.mark.slow
def test_registered_versions_load_with_mlflow_transformers_and_pyfunc(services, registered, random_adapter):
    import mlflow
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(5, 0.5))))
    model_version = register(services, registered.model_id, "", "tiny-model")
    adapter_version = register(services, registered.model_id, adapter.id, "tiny-adapter")
    assert (model_version.kind, adapter_version.kind) == ("model", "adapter")

    uri = services.settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri)
    # MLflow's Default experiment keeps its artifacts in the home's mlartifacts, not in the first run's folder.
    default = client.get_experiment_by_name("Default")
    assert default.artifact_location == (services.settings.mlflow_artifacts_dir / "0").as_uri()
    assert not any(services.settings.runs_dir.glob("*/mlruns"))

    tokenizer = AutoTokenizer.from_pretrained(registered.model.location)
    ids = tokenizer("Where is my order?", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(registered.model.location)
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted_logits = PeftModel.from_pretrained(base, adapter.location)(ids).logits

    pipeline = mlflow.transformers.load_model("models:/tiny-model/latest")
    assert type(pipeline).__name__ == "TextGenerationPipeline"
    with torch.no_grad():
        assert torch.allclose(pipeline.model(ids).logits, base_logits, atol=1e-5)
    loaded = mlflow.transformers.load_model("models:/tiny-adapter/latest")
    assert isinstance(loaded.model, PeftModel)  # the adapter on its base, which the version names
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, adapted_logits, atol=1e-5)
    version = client.get_model_version("tiny-adapter", adapter_version.version)
    assert version.tags["ftapp.base_model"] == registered.model.location

    for name in ("tiny-model", "tiny-adapter"):
        predicted = mlflow.pyfunc.load_model(f"models:/{name}/latest").predict(
            ["Where is my order?"], params={"max_new_tokens": 4, "do_sample": False}
        )
        assert isinstance(predicted[0], str) and predicted[0]

    # ftapp loads a registered model version back as a model of its own.
    record = services.models.add(AddModelRequest(type="model_registry", name="from-registry", registry_name="tiny-model"))
    assert {"config.json", "tokenizer_config.json"} <= {p.name for p in Path(record.location).iterdir()}
