"""The Configs tab: presets, typed configs with field help, deduplication."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from ftapp.prompts.config_schemas import SCHEMAS
from ftapp.services import Services
from ui import configs


def test_presets_are_listed_with_their_configs(services: Services) -> None:
    text = configs.presets_markdown(services)

    for preset in services.configs.presets():
        assert preset.name in text
        for record in preset.configs.values():
            assert record.id[:8] in text


def test_every_typed_field_has_its_help_in_the_table(services: Services) -> None:
    for config_type, schema in SCHEMAS.items():
        editor, help_table = configs.config_template(config_type)
        assert set(json.loads(editor.value)) == set(schema.__dataclass_fields__)
        rows = help_table.value["data"]
        assert [row[0] for row in rows] == list(schema.__dataclass_fields__)
        assert [row[4] for row in rows] == [f.metadata["help"] for f in schema.__dataclass_fields__.values()]
    lr = configs.field_help("training_arguments").set_index("field").loc["learning_rate"]
    assert (lr["default"], lr["allowed"]) == ("0.0002", "> 0 and ≤ 1")
    untyped = configs.config_template("custom")[1]
    assert "not typed" in untyped.label and untyped.value["data"] == []
    assert configs.config_template("axolotl")[0].language == "yaml"


def test_save_then_the_same_content_is_deduplicated(services: Services) -> None:
    text = json.dumps({"r": 8, "lora_alpha": 16})

    saved = configs.save_config(services, "lora_config", text, "small", "", "rank 8")
    again = configs.save_config(services, "lora_config", text, "small again", "", "")

    assert saved.startswith("Saved lora_config config")
    assert again.startswith("CF-004")
    table, _ = configs.list_configs(services, "lora_config")
    assert table[table["name"] == "small"].shape[0] == 1
    assert "small again" not in table["name"].tolist()


def test_a_bad_config_reports_every_field_and_is_not_stored(services: Services) -> None:
    before = len(services.configs.list())

    with pytest.raises(gr.Error) as caught:
        configs.save_config(services, "training_arguments", json.dumps({"learning_rat": 1, "max_steps": -5}), "", "", "")

    message = caught.value.message
    assert "CF-005: unknown training_arguments field &#x27;learning_rat&#x27;" in message
    assert "did you mean &#x27;learning_rate&#x27;" in message
    assert "CF-005: max_steps must be a whole number from -1 to 10,000,000 (got -5)" in message
    assert len(services.configs.list()) == before


def test_presets_cannot_be_removed(services: Services) -> None:
    preset_id = next(iter(services.configs.presets()[0].configs.values())).id

    with pytest.raises(gr.Error, match="preset"):
        configs.remove_config(services, preset_id, True)
    assert services.configs.get(preset_id)
