"""Training presets travel with a database export, and an import cannot bring one whose settings are no JSON object."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.runs import FineTuneRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from tests.ftapp.test_rule_catalogue import CPU


def test_a_preset_comes_along_in_a_database_export(services: Services, registered, demo_kit, tmp_path: Path) -> None:
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="",
        gpus="cpu",
        method="grpo",
        overrides={"max_steps": 5},
        rewards=({"kind": "exact_match"},),
    )
    saved = services.training_presets.save("travelling", request, "modern default", CPU)
    services.database.export_to(tmp_path / "export.json")

    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        report = other.database.import_from(tmp_path / "export.json", trusted_roots=(services.settings.home, demo_kit.model_dir))
        assert report.imported["training_presets"] == 1
        arrived = other.training_presets.get("travelling")
        assert (arrived.id, arrived.config_preset, arrived.request) == (saved.id, "modern default", request)
    finally:
        other.close()


def test_an_imported_preset_names_the_rows_this_database_already_had(services: Services, registered, demo_kit, tmp_path: Path) -> None:
    """The importing home already has the preset's model and its custom config under other ids: the import counts them
    as duplicates, and the preset must name this home's rows (ids it lacks would fail the preset with "not found")."""
    from ftapp.models import AddModelRequest
    from ftapp.prompts import AddConfigRequest
    from ftapp.runs.training_presets import STORED_FIELDS
    from storage.snapshot import PRESET_REFERENCES

    assert set(PRESET_REFERENCES) == {name for name in STORED_FIELDS if name.endswith("_id")}
    custom = '{"learning_rate": 0.0003, "num_train_epochs": 2}'
    config = services.configs.add(AddConfigRequest(type="training_arguments", config=custom)).record
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="",
        gpus="cpu",
        training_arguments_config_id=config.id,
    )
    services.training_presets.save("custom", request, None, CPU)
    services.database.export_to(tmp_path / "export.json")

    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        model = other.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
        own = other.configs.add(AddConfigRequest(type="training_arguments", config=custom)).record
        assert (model.id, own.id) != (registered.model_id, config.id)
        report = other.database.import_from(tmp_path / "export.json", trusted_roots=(services.settings.home, demo_kit.model_dir))
        assert report.imported["training_presets"] == 1 and report.duplicates["models"] == 1
        arrived = other.training_presets.get("custom").request
        assert (arrived.base_model_id, arrived.training_arguments_config_id) == (model.id, own.id)
        assert (arrived.dataset_id, arrived.prompt_id) == (registered.dataset_id, registered.prompt_id)  # imported as they were
    finally:
        other.close()


def test_an_import_refuses_settings_that_are_no_json_object(services: Services, tmp_path: Path) -> None:
    data = json.loads(services.database.export_json())
    data["tables"]["training_presets"].append(
        {"id": str(uuid.uuid4()), "name": "evil", "config_preset": None, "settings": "[1, 2]", "created_at": "2026-01-01T00:00:00+00:00"}
    )
    (tmp_path / "crafted.json").write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(ValidationError, match="DB-001: training_presets row 0 \\('evil'\\): settings must be a JSON object"):
        services.database.import_from(tmp_path / "crafted.json")
    assert services.training_presets.list() == []


def test_an_import_keeps_a_preset_whose_ids_are_not_text_and_using_it_says_why(services: Services, tmp_path: Path) -> None:
    """Ids of the wrong kind in a crafted export (a list where a model id goes) are not remapped and do not break the
    import; the preset's own check names them when it is used."""
    data = json.loads(services.database.export_json())
    data["tables"]["training_presets"].append(
        {
            "id": str(uuid.uuid4()),
            "name": "odd",
            "config_preset": None,
            "settings": json.dumps({"base_model_id": ["x"], "dataset_id": {"y": 1}}),
            "created_at": "2026-01-01T00:00:00+00:00",
        }
    )
    (tmp_path / "crafted.json").write_text(json.dumps(data), encoding="utf-8")

    report = services.database.import_from(tmp_path / "crafted.json")
    assert report.imported["training_presets"] == 1
    with pytest.raises(ValidationError, match="TP-002"):
        services.training_presets.get("odd")
