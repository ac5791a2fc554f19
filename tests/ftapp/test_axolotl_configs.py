"""Axolotl configs as stored: the user's YAML byte for byte, deduplicated by content, read as hostile text."""

from __future__ import annotations

import json

import pytest

from ftapp.errors import ValidationError
from ftapp.prompts.axolotl_formats import FORMATS, format_templates
from ftapp.prompts.axolotl_template import TEMPLATE_NAME, TEMPLATE_YAML
from ftapp.prompts.configs import AddConfigRequest

USER_YAML = """\
# my first Axolotl run
base_model: org/model   # the run replaces it
datasets:
  - path: data/train.jsonl
    type: alpaca
adapter: lora
lora_r: 8
lora_alpha: 16
micro_batch_size: 4
"""
SAME_CONTENT = 'micro_batch_size: 4\nlora_alpha: 16\nlora_r: 8\nadapter: "lora"\ndatasets: [{type: alpaca, path: data/train.jsonl}]\nbase_model: org/model\n'


def add(services, text, **more):
    return services.configs.add(AddConfigRequest(type="axolotl", config=text, **more))


def test_the_yaml_is_stored_byte_for_byte_and_deduplicated_by_content(services):
    first = add(services, USER_YAML, name="mine")
    assert first.record.config == USER_YAML and not first.deduplicated  # comments, order and spacing are the user's
    again = add(services, SAME_CONTENT, name="other spelling")
    assert again.deduplicated and again.record.id == first.record.id and again.record.config == USER_YAML
    assert again.notice.startswith("CF-004")
    changed = add(services, USER_YAML.replace("lora_r: 8", "lora_r: 16"))
    assert not changed.deduplicated


def test_a_config_given_as_data_is_written_in_its_own_order(services):
    record = services.configs.add(
        AddConfigRequest(type="axolotl", config={"datasets": [{"path": "d.jsonl", "type": "completion"}], "adapter": "lora"})
    ).record
    assert record.config.splitlines()[0] == "datasets:" and "adapter: lora" in record.config


BILLION_LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(9)
)


@pytest.mark.parametrize(
    "text, rule, said",
    [
        ("base_model: [unclosed", "CF-003", "not valid YAML"),
        ("!!python/object/apply:os.system ['touch /tmp/owned']", "CF-003", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "CF-003", "not valid YAML"),
        ("", "CF-003", "empty"),
        (BILLION_LAUGHS, "CF-003a", "anchors or aliases"),
        ("x: " + "[" * 40 + "]" * 40 + "\n", "CF-003a", "nested deeper"),
        ("datasets: [{path: a, type: alpaca}]\nnote: " + "y" * 70_000 + "\n", "CF-003a", "characters long"),
        ("datasets: [{path: a, type: alpaca}]\nwhen: 2024-01-01\n", "CF-003a", "quote it"),
        ("datasets: [{path: a, type: alpaca}]\n1: one\n", "CF-003a", "not text"),
        ("datasets: [{path: a, type: alpaca}]\nlearning_rate: .inf\n", "CF-003a", "finite"),
        ("- just\n- a list\n", "CF-003a", "mapping"),
        ("datasets: [{path: a, type: alpaca}]\ntrust_remote_code: true\n", "CF-003a", "trust_remote_code is refused"),
        ("datasets: [{path: a, type: os.system}]\n", "CF-003a", "dotted module"),
        ("plugins: [evil.Plugin]\n", "CF-003a", "imports the Python modules"),
        ("datasets: [{path: a, type: alpaca}]\nhub_token: hf_abcdefghijklmnopqrstuvwxyzABCDEFGH\n", "CF-005", "secret"),
    ],
)
def test_hostile_yaml_is_refused_with_its_rule_and_nothing_is_stored(services, text, rule, said):
    before = len(services.configs.list())
    with pytest.raises(ValidationError) as refused:
        add(services, text)
    assert rule in refused.value.rule_ids and said in str(refused.value), str(refused.value)
    assert len(services.configs.list()) == before


def test_a_config_written_for_another_machine_is_kept_and_only_a_run_refuses_it(services):
    # Hub pushes, trackers and absolute paths reach outside a run: refused when one uses it (tests/ftapp/test_axolotl_requests).
    text = "base_model: /models/llama\ndatasets:\n  - path: /data/train.jsonl\n    type:\nhub_model_id: me/model\nwandb_project: p\n"
    assert add(services, text).record.config == text


def test_the_dataset_formats_and_the_template_are_shipped(services):
    formats = {record.description: record for record in services.configs.list("axolotl_dataset_formats")}
    assert set(formats) == set(FORMATS)  # each found by its type, none deduplicated into another
    assert formats["alpaca"].values == FORMATS["alpaca"] and all(record.is_default for record in formats.values())
    (template,) = [record for record in services.configs.list("axolotl") if record.name == TEMPLATE_NAME]
    assert template.config == TEMPLATE_YAML and template.is_default


@pytest.mark.parametrize(
    "config, said",
    [
        ({}, "JSON object of the columns"),
        ({"a{b}": "x"}, "cannot be a template field"),
        ({"question": 3}, "must map to a description"),
    ],
)
def test_a_dataset_format_names_columns_as_template_fields(services, config, said):
    with pytest.raises(ValidationError) as refused:
        services.configs.add(AddConfigRequest(type="axolotl_dataset_formats", config=json.dumps(config), description="mine"))
    assert refused.value.rule_ids == ["CF-005"] and said in str(refused.value)


def test_the_prompt_of_a_format_is_one_line_per_column_with_the_trained_column_last():
    alpaca = format_templates(FORMATS["alpaca"], ["instruction", "input", "output", "extra"])
    assert alpaca.prompt_template == "<Instruction>: {instruction}\n<Input>: {input}\n<Output>: {output}\n"
    assert (alpaca.input_template, alpaca.completion_template, alpaca.missing) == (
        "<Instruction>: {instruction}\n<Input>: {input}\n<Output>: ",
        "{output}\n",
        (),
    )
    assert (
        format_templates(FORMATS["alpaca"], ["instruction", "output"]).prompt_template
        == "<Instruction>: {instruction}\n<Output>: {output}\n"
    )
    assert format_templates(FORMATS["metharme"], ["prompt", "generation"]).completion_template == "{generation}\n"
    assert format_templates(FORMATS["alpaca"], ["instruction", "input"]).missing == ("output",)
