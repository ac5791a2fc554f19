"""Item 6 of issue 14: a prompt template is plain ``{column}`` fields. Every other format-string form
is refused with PR-007 wherever a template enters (service, CLI, generation) and wherever a stored
one is used (preflight, evaluation): no traceback, nothing written, and no width read from a data
column ever allocates (``{prompt:>{w}}`` with ``w = 10,000,000`` grew the app by 450 MB)."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from cli.main import main
from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.ids import new_id
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.prompts.templates import render
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.machine import Machine
from ftapp.runs.preflight import average_tokens
from ftapp.services import Services

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
BAD = {
    "nested format spec": "{prompt:>{w}}",
    "nested spec, unknown field": "{prompt:>{nope}}",
    "conversion": "{prompt!r}",
    "attribute access": "{prompt.upper}",
    "index access": "{prompt[0]}",
    "huge width": "{prompt:>10000000}",
    "positional number": "{0}",
    "positional empty": "{}",
}


@pytest.fixture
def dataset_id(services: Services, tmp_path: Path) -> str:
    csv = tmp_path / "wide.csv"
    csv.write_text("prompt,answer,w\nhello,greet,10000000\nbye,farewell,10000000\n", encoding="utf-8")
    return services.datasets.add(AddDatasetRequest(name="wide", location=str(csv))).id


def _prompt_rows(services: Services) -> int:
    with sqlite3.connect(services.settings.home / "ftapp.db") as db:
        return db.execute("select count(*) from prompts").fetchone()[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_service_refuses_each_bad_form_with_pr_007_and_stores_nothing(case: str, services: Services, dataset_id: str) -> None:
    template = BAD[case]
    for fields in (
        {"prompt_template": template, "input_template": template, "completion_template": ""},
        {"prompt_template": "{prompt}{answer}", "input_template": "{prompt}", "completion_template": template},
    ):
        with pytest.raises(ValidationError) as caught:
            services.prompts.add(AddPromptRequest(name="bad", dataset_id=dataset_id, **fields))
        assert set(caught.value.rule_ids) == {"PR-007"}, caught.value
        with pytest.raises(ValidationError, match="PR-007"):
            services.prompts.render_preview(dataset_id, **fields)
    assert _prompt_rows(services) == 0


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_cli_refuses_each_bad_form_with_pr_007_and_stores_nothing(case: str, services: Services, dataset_id: str, capsys) -> None:
    code = main(
        ["--home", str(services.settings.home), "prompts", "add", "--name", "bad", "--dataset", dataset_id, "--template", BAD[case]]
    )
    err = capsys.readouterr().err
    assert code == 2 and "PR-007" in err and "Traceback" not in err, err
    assert _prompt_rows(services) == 0


def test_literal_braces_and_plain_fields_are_still_saved(services: Services, dataset_id: str) -> None:
    template = '{{"request": "{prompt}"}} -> {answer}'
    record = services.prompts.add(
        AddPromptRequest(
            name="json-ish",
            dataset_id=dataset_id,
            prompt_template=template,
            input_template='{{"request": "{prompt}"}} -> ',
            completion_template="{answer}",
        )
    )
    assert (
        services.prompts.render_preview(dataset_id, template, record.input_template, "{answer}")[0].prompt
        == '{"request": "hello"} -> greet'
    )


def test_the_render_refuses_a_width_from_the_data_without_allocating() -> None:
    rows = [{"prompt": "x", "w": 10_000_000}] * 50  # the preflight's sample
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError) as caught:
            average_tokens(rows, "{prompt:>{w}}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.rule_ids == ["PR-007"]
    assert peak < 2_000_000  # a rendered row alone would be 10 MB
    with pytest.raises(ValidationError, match="PR-007"):
        render("{prompt!r}", {"prompt": "x"})
    assert render("{prompt} {gone}", {"prompt": "x"}) == "x "  # a column a row lacks renders empty, as in the trainer


def _stored_bad_prompt(services: Services, dataset_id: str, template: str) -> str:
    """A prompt written straight into the database, as an import or an older version could."""
    prompt_id = new_id()
    with services.db.transaction() as tx:
        tx.prompts.add(
            id=prompt_id,
            name="imported",
            type="in_place",
            dataset_id=dataset_id,
            prompt_template=template,
            input_template=template,
            completion_template="",
        )
    return prompt_id


@pytest.fixture
def model_id(services: Services, tmp_path: Path) -> str:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, '
        '"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, '
        '"vocab_size": 64}'
    )
    return services.models.add(AddModelRequest(type="project", name="tiny", location=str(folder))).id


@pytest.mark.parametrize("template", ["{prompt:>{w}}", "{prompt:>{nope}}", "{prompt!r}"])
def test_a_stored_bad_template_gives_pr_007_at_preflight_not_a_traceback(
    template: str, services: Services, dataset_id: str, model_id: str, capsys
) -> None:
    prompt_id = _stored_bad_prompt(services, dataset_id, template)
    request = FineTuneRequest(base_model_id=model_id, dataset_id=dataset_id, prompt_id=prompt_id, adapter_name="ok", gpus="cpu")
    tracemalloc.start()
    try:
        problems, preflight = services.runs.check(request, CPU)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert preflight is None and [p.rule_id for p in problems] == ["PR-007", "PR-007"], problems
    assert "prompt 'imported': prompt_template placeholder" in problems[0].message
    assert peak < 20_000_000

    code = main(
        [
            "--home",
            str(services.settings.home),
            "train",
            "--model",
            model_id,
            "--dataset",
            dataset_id,
            "--prompt",
            prompt_id,
            "--name",
            "ok",
            "--gpus",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "PR-007" in err and "Traceback" not in err, err
    assert services.runs.list() == [] and not any(services.settings.runs_dir.glob("*"))

    evaluation = EvaluationRequest(dataset_id=dataset_id, prompt_id=prompt_id, combinations=(Combination(model_id),), gpus="cpu")
    problems, _rows = services.evaluations.check(evaluation, CPU)
    assert "PR-007" in {p.rule_id for p in problems}, problems


def test_generated_templates_leave_out_columns_that_cannot_be_fields(services: Services, tmp_path: Path) -> None:
    csv = tmp_path / "odd.csv"
    csv.write_text("question,a.b,x{y},0,answer\nq,1,2,3,a\n", encoding="utf-8")
    dataset = services.datasets.add(AddDatasetRequest(name="odd", location=str(csv)))

    generated = services.prompts.generate(dataset.id)

    assert "{question}" in generated.input_template and generated.completion_template == "{answer}\n"
    assert "a.b" not in generated.prompt_template and "x{y" not in generated.prompt_template
    services.prompts.add(
        AddPromptRequest(
            name="odd",
            dataset_id=dataset.id,
            prompt_template=generated.prompt_template,
            input_template=generated.input_template,
            completion_template=generated.completion_template,
        )
    )

    only_odd = tmp_path / "only-odd.csv"
    only_odd.write_text("a.b,0\n1,2\n", encoding="utf-8")
    odd = services.datasets.add(AddDatasetRequest(name="only-odd", location=str(only_odd)))
    with pytest.raises(ValidationError) as caught:
        services.prompts.generate(odd.id)
    assert caught.value.rule_ids == ["PR-007"]
