"""Prompt generation from columns (the seed's ranked output list) and previews on real rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from ftapp.prompts.service import AddPromptRequest
from ftapp.prompts.templates import choose_output_column, generate_templates, placeholders


def test_output_column_follows_the_ranking_then_falls_back_to_the_last():
    assert choose_output_column(["instruction", "input", "output"]) == "output"
    assert choose_output_column(["instruction", "intent"]) == "intent"
    assert choose_output_column(["Question", "Answer", "context"]) == "Answer"
    assert choose_output_column(["foo", "bar"]) == "bar"


def test_generated_templates_split_into_input_and_completion():
    generated = generate_templates(["question", "context", "answer"])
    assert generated.output_column == "answer"
    assert generated.prompt_template == generated.input_template + generated.completion_template
    assert placeholders(generated.input_template)[0] == ["question", "context"]
    assert generated.completion_template == "{answer}\n"


def test_generate_and_preview_on_real_rows(services, tmp_path: Path):
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n", encoding="utf-8")
    dataset = services.datasets.add(AddDatasetRequest(location=str(csv)))
    generated = services.prompts.generate(dataset.id)
    rows = services.prompts.render_preview(
        dataset.id, generated.prompt_template, generated.input_template, generated.completion_template, limit=5
    )
    assert [r.completion for r in rows] == ["4\n", "Paris\n"]
    assert "<Question>: What is 2+2?" in rows[0].input and rows[0].prompt.endswith("4\n")
    record = services.prompts.add(
        AddPromptRequest(
            name="qa",
            dataset_id=dataset.id,
            **{k: getattr(generated, k) for k in ("prompt_template", "input_template", "completion_template")},
        )
    )
    assert services.prompts.get(record.id).completion_template == "{answer}\n"


def test_preview_reports_unknown_placeholders(services, tmp_path: Path):
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nq,a\n", encoding="utf-8")
    dataset = services.datasets.add(AddDatasetRequest(location=str(csv)))
    with pytest.raises(ValidationError) as caught:
        services.prompts.render_preview(dataset.id, "{question} {reply}", "{question}", "{reply}")
    assert caught.value.rule_ids == ["PR-006", "PR-006"]


def test_literal_braces_are_allowed():
    names, problems = placeholders('Return JSON like {{"intent": "{intent}"}}')
    assert names == ["intent"] and problems == []
