"""The one template rule, shared by ftapp (PR-007) and the trainer: plain ``{column}`` fields only."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from trainer.protocol.template_fields import TemplateError, is_plain_field, render_template, template_problems
from trainer.recipes.spec_checks import check_training_spec

BAD = {
    "nested spec": "{request:>{nope}}",
    "conversion": "{request!r}",
    "attribute": "{request.upper}",
    "index": "{request[0]}",
    "huge width": "{request:>10000000}",
    "positional number": "{0}",
    "positional empty": "{}",
    "conversion and spec": "{request!s:>3}",
    "unbalanced": "{request",
    "stray closing brace": "request}",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_form_but_plain_fields_is_refused_before_rendering(case: str) -> None:
    template = BAD[case]
    assert template_problems(template)[1]
    with pytest.raises(TemplateError):
        render_template(template, {"request": "hi", "nope": 5})


def test_plain_fields_and_literal_braces_render_like_format() -> None:
    template = 'Q: {request}\n{{"intent": "{intent}"}} {request}'
    row = {"request": "hi", "intent": None, "extra": 3}
    assert template_problems(template) == (["request", "intent"], [])
    assert render_template(template, row) == 'Q: hi\n{"intent": ""} hi'
    assert render_template("{n} {f}", {"n": 3, "f": 0.5}) == "3 0.5"
    with pytest.raises(KeyError):
        render_template("{missing}", row)


def test_a_width_taken_from_the_row_allocates_nothing() -> None:
    # ``"{prompt:>{w}}".format_map`` with w = 10,000,000 builds a 10 MB string per row (450 MB in the app).
    row = {"prompt": "x", "w": 10_000_000}
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match="format spec"):
            render_template("{prompt:>{w}}", row)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_column_names_that_cannot_be_fields() -> None:
    assert is_plain_field("instruction") and is_plain_field("my column")
    for name in ("a.b", "a[0]", "a!r", "a:b", "x{y", "x}y", "0", ""):
        assert not is_plain_field(name), name


def test_the_trainer_refuses_a_spec_whose_template_is_not_plain_fields(make_spec, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "run")
    check_training_spec(spec, "sft")  # the demo kit's templates are plain
    bad = replace(spec, data=replace(spec.data, input_template="{request:>{w}}"))
    with pytest.raises(ValueError, match=r"spec.data.input_template placeholder '\{request:>\{w\}\}' has a format spec"):
        check_training_spec(bad, "sft")


def test_the_trainer_renders_rows_with_the_shared_renderer() -> None:
    from trainer.data.training_data import _render

    assert _render("A: {a} {{b}}", {"a": None}) == "A:  {b}"
    with pytest.raises(TemplateError):
        _render("{a:>{w}}", {"a": "x", "w": 10_000_000})
