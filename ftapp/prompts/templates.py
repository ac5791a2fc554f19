"""Prompt templates: placeholder checks, rendering and generation from a dataset's columns.

Templates are plain ``{column}`` fields and literal text (``{{``/``}}`` for braces): no format spec,
conversion, attribute or index access, nor positional field (PR-007). The rule and the renderer are
``trainer.protocol.template_fields``, shared with the trainer, so a template is read the same way everywhere. The
training text is ``prompt_template`` and the loss is taken on the part ``completion_template``
renders, so ``input_template + completion_template`` should equal ``prompt_template``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftapp import rules
from ftapp.errors import Problem, ValidationError
from storage import PromptRecord
from trainer.protocol import TemplateError, compile_template, is_plain_field, render_template, template_problems

TEMPLATE_FIELDS = ("prompt_template", "input_template", "completion_template")
MAX_TEMPLATE_CHARS = 20_000  # a template is a few lines around the columns; every training row repeats it

# Most likely output column first (seed 001 ranks common output names; the first match wins,
# and with no match the last column is the output).
OUTPUT_COLUMN_RANKING: tuple[str, ...] = (
    "output",
    "response",
    "completion",
    "answer",
    "target",
    "label",
    "labels",
    "intent",
    "assistant",
    "reply",
    "answers",
    "result",
    "outputs",
    "responses",
    "chosen",
    "solution",
    "summary",
    "translation",
    "sql",
    "query_output",
    "code",
    "generated",
    "gold",
    "expected",
    "expected_output",
    "ground_truth",
    "reference",
    "references",
    "text_output",
    "output_text",
    "completion_text",
    "final_answer",
    "rationale",
    "explanation",
    "class",
    "category",
    "sentiment",
    "tag",
    "tags",
    "y",
    "targets",
    "prediction",
    "action",
    "decision",
    "verdict",
    "score",
    "rating",
    "feedback",
    "correction",
    "rewrite",
    "paraphrase",
    "headline",
    "title",
)


@dataclass(frozen=True)
class GeneratedTemplates:
    prompt_template: str
    input_template: str
    completion_template: str
    output_column: str


def placeholders(template: str, field: str = "template") -> tuple[list[str], list[Problem]]:
    """Named placeholders in order of appearance, or PR-007 problems: anything but plain ``{column}`` fields."""
    if len(template) > MAX_TEMPLATE_CHARS:  # said before parsing: a request body has no size limit
        return [], [Problem(rules.TEMPLATE_SYNTAX, f"{field} has {len(template):,} characters; at most {MAX_TEMPLATE_CHARS:,}", field)]
    names, problems = template_problems(template)
    return names, [Problem(rules.TEMPLATE_SYNTAX, f"{field} {problem}", field) for problem in problems]


def stored_template_problems(prompt: PromptRecord) -> list[Problem]:
    """PR-007 for a stored prompt a request uses: an import or an older version may hold any text."""
    return [
        Problem(rules.TEMPLATE_SYNTAX, f"prompt '{prompt.name}': {problem.message}", "prompt_id")
        for field in TEMPLATE_FIELDS
        for problem in placeholders(getattr(prompt, field) or "", field)[1]
    ]


def check_templates(templates: dict[str, str], columns: list[str]) -> list[Problem]:
    """PR-006/PR-007 for each template field against the dataset's columns."""
    problems: list[Problem] = []
    for field, template in templates.items():
        names, syntax = placeholders(template, field)
        problems.extend(syntax)
        for name in names:
            if name not in columns:
                problems.append(
                    Problem(
                        rules.TEMPLATE_COLUMNS,
                        f"{field} uses {{{name}}}, which is not a column of the dataset (columns: {', '.join(columns)})",
                        field,
                    )
                )
    return problems


def render(template: str, row: dict, field: str = "template") -> str:
    """The row through the template, plain fields only (a column the row lacks renders empty);
    a template that is not plain fields raises PR-007, before any row is formatted."""
    try:
        parts = compile_template(template)
    except TemplateError as error:
        raise ValidationError([Problem(rules.TEMPLATE_SYNTAX, f"{field} {problem}", field) for problem in error.problems]) from None
    return render_template(template, {name: row.get(name) for _literal, name in parts if name is not None})


def choose_output_column(columns: list[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in OUTPUT_COLUMN_RANKING:
        if name in lowered:
            return lowered[name]
    return columns[-1]


def _label(column: str) -> str:
    return column.replace("_", " ").strip().capitalize() or column


def generate_templates(columns: list[str]) -> GeneratedTemplates:
    # A column whose name is no plain field (braces, '.', '[', '!', ':' or digits only) cannot be a placeholder.
    columns = [c for c in columns if is_plain_field(c)]
    if not columns:
        raise ValidationError(
            Problem(
                rules.TEMPLATE_SYNTAX,
                "the dataset has no column whose name can be a template field "
                "(a name without braces, '.', '[', '!' or ':'); write the templates by hand",
                "dataset_id",
            )
        )
    output = choose_output_column(columns)
    inputs = [c for c in columns if c != output]
    lines = ["You are an LLM responsible for generating a response. Please provide a response given the user input below.", ""]
    lines += [f"<{_label(c)}>: {{{c}}}" for c in inputs]
    lines.append(f"<{_label(output)}>: ")
    input_template = "\n".join(lines)
    completion_template = f"{{{output}}}\n"
    return GeneratedTemplates(input_template + completion_template, input_template, completion_template, output)
