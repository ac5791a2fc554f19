"""The Prompts tab: generate templates from columns, preview them on real rows, save."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.service import AddModelRequest
from ftapp.services import Services
from ui import prompts


@pytest.fixture
def dataset_id(services: Services, alpaca: Path) -> str:
    return services.datasets.add(AddDatasetRequest(location=str(alpaca))).id


def test_generate_fills_the_three_templates_from_the_columns(services: Services, dataset_id: str) -> None:
    prompt, input_template, completion, note = prompts.generate_templates(services, dataset_id)

    assert "{instruction}" in input_template and "{input}" in input_template
    assert completion == "{output}\n"
    assert prompt == input_template + completion
    assert "**output**" in note


def test_preview_renders_real_rows_with_the_completion_marked(services: Services, dataset_id: str, alpaca: Path) -> None:
    first = json.loads(alpaca.read_text(encoding="utf-8"))[0]
    templates = prompts.generate_templates(services, dataset_id)[:3]

    html = prompts.preview_prompt(services, dataset_id, *templates)

    assert html.count("<pre") == prompts.PREVIEW_ROWS
    assert "Describe a process of making crepes." in html  # row 1's instruction, rendered in place
    assert "Note:" not in html  # input + completion equal the prompt template
    completion = html.split("<mark", 1)[1].split(">", 1)[1]
    assert completion.startswith(first["output"][:40].replace("'", "&#x27;"))


def test_preview_lists_template_problems_in_place(services: Services, dataset_id: str) -> None:
    html = prompts.preview_prompt(services, dataset_id, "{instruction} {answer}", "{instruction} ", "{answer}")

    assert "Not yet renderable" in html
    assert html.count("PR-006") == 2 and "{answer}" in html
    assert "<pre" not in html


def test_save_then_list(services: Services, dataset_id: str) -> None:
    templates = prompts.generate_templates(services, dataset_id)[:3]

    status = prompts.save_prompt(services, "alpaca-prompt", dataset_id, *templates, "made in a test")

    assert "alpaca-prompt" in status
    table, chosen, dataset_picker = prompts.list_prompts(services)
    assert table["name"].tolist() == ["alpaca-prompt"]
    assert table["dataset"].tolist() == ["alpaca_en_demo"]
    assert dataset_picker.choices == [("alpaca_en_demo", dataset_id)]
    assert prompts.show_prompt(services, chosen.choices[0][1]) == (dataset_id, *templates)


def test_saving_a_bad_prompt_reports_every_rule_and_writes_nothing(services: Services, dataset_id: str) -> None:
    with pytest.raises(gr.Error) as caught:
        prompts.save_prompt(services, "", dataset_id, "{instruction} {answer}", "{instruction} {0}", "{answer}", "")

    message = caught.value.message
    assert "PR-001: name is required" in message
    assert "PR-006" in message and "PR-007" in message
    assert services.prompts.list() == []


CHATS = [
    {"messages": [{"role": "user", "content": "Cancel my order <now>."}, {"role": "assistant", "content": "Your order is cancelled."}]},
    {"messages": [{"role": "user", "content": "Where is my parcel?"}, {"role": "assistant", "content": "On its way."}]},
]


@pytest.fixture
def chats_id(services: Services, tmp_path: Path) -> str:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in CHATS), encoding="utf-8")
    return services.datasets.add(AddDatasetRequest(name="chats", location=str(path))).id


def test_conversations_preview_through_the_chat_template_with_the_assistant_marked(
    services: Services,
    demo_kit,
    chats_id: str,
) -> None:
    model_id = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir))).id
    block, is_chat = prompts.chat_mode(services, chats_id)
    assert block.visible is True and is_chat is True
    assert prompts.list_chat_models(services, None).value == model_id  # the first model is picked

    html = prompts.preview_chat(services, chats_id, model_id, is_chat)

    assert html.count("<pre") == len(CHATS)
    marked = [part.split(">", 1)[1].split("</mark>", 1)[0] for part in html.split("<mark")[1:]]
    assert marked == ["Your order is cancelled.&lt;/s&gt;\n", "On its way.&lt;/s&gt;\n"]
    assert "&lt;s&gt;&lt;|user|&gt;\nCancel my order &lt;now&gt;." in html  # masked, escaped, through the template


def test_the_chat_preview_stays_away_for_column_data_and_reports_models_without_a_template(
    services: Services,
    dataset_id: str,
    chats_id: str,
    tmp_path: Path,
    demo_kit,
) -> None:
    block, is_chat = prompts.chat_mode(services, dataset_id)
    assert block.visible is False and is_chat is False
    assert prompts.preview_chat(services, dataset_id, "any-model", is_chat) == prompts.EMPTY_CHAT_PREVIEW
    assert prompts.preview_chat(services, chats_id, None, True) == prompts.EMPTY_CHAT_PREVIEW
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((demo_kit.model_dir / "config.json").read_bytes())
    model_id = services.models.add(AddModelRequest(type="project", name="bare", location=str(bare))).id

    with pytest.raises(gr.Error, match="no chat template"):
        prompts.preview_chat(services, chats_id, model_id, True)


@pytest.mark.parametrize("template", ["{instruction:>{output}}", "{instruction!r}", "{instruction.upper}", "{instruction[0]}", "{0}"])
def test_save_refuses_anything_but_plain_fields_with_pr_007(services: Services, dataset_id: str, template: str) -> None:
    with pytest.raises(gr.Error, match="PR-007"):
        prompts.save_prompt(services, "bad", dataset_id, template, template, "", "")
    html = prompts.preview_prompt(services, dataset_id, template, template, "")
    assert "PR-007" in html and "<pre" not in html
    assert services.prompts.list() == []
