"""Configs: presets shipped, typed validation, deduplication by content."""

from __future__ import annotations

import json

import pytest

from ftapp.errors import ConflictError
from ftapp.prompts.config_schemas import SCHEMAS, help_text
from ftapp.prompts.configs import AddConfigRequest
from ftapp.prompts.presets import MODERN, SEED_001


def test_presets_are_installed_once(services):
    presets = {p.name: p for p in services.configs.presets()}
    assert set(presets) == {SEED_001, MODERN}
    seed = presets[SEED_001].configs
    assert set(seed) == {"training_arguments", "bitsandbytes_config", "lora_config", "generation_config"}
    assert seed["training_arguments"].values["optim"] == "paged_adamw_32bit"
    assert seed["lora_config"].values["target_modules"] == ["q_proj", "v_proj"]
    assert presets[MODERN].configs["lora_config"].values["target_modules"] == "all-linear"
    count = len(services.configs.list())
    services.configs.ensure_presets()
    assert len(services.configs.list()) == count


def test_identical_content_in_another_spelling_is_deduplicated(services):
    first = services.configs.add(AddConfigRequest(type="generation_config", config='{"max_new_tokens": 32, "do_sample": false}'))
    again = services.configs.add(
        AddConfigRequest(type="generation_config", config=json.dumps({"do_sample": False, "max_new_tokens": 32}, indent=4))
    )
    other_family = services.configs.add(
        AddConfigRequest(type="generation_config", config='{"max_new_tokens": 32, "do_sample": false}', model_family="Qwen2ForCausalLM")
    )
    assert not first.deduplicated and again.deduplicated and again.record.id == first.record.id
    assert not other_family.deduplicated and other_family.record.id != first.record.id


def test_preset_configs_cannot_be_removed_but_user_configs_can(services):
    preset = services.configs.presets()[0].configs["lora_config"]
    with pytest.raises(ConflictError):
        services.configs.remove(preset.id)
    mine = services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 4}')).record
    services.configs.remove(mine.id)
    assert all(c.id != mine.id for c in services.configs.list())


def test_every_typed_field_has_help_text():
    for schema in SCHEMAS.values():
        assert all(text.strip() for text in help_text(schema).values()), schema.__name__
