"""Prompt templates: placeholder checks, rendering and generation from a dataset's columns.

Templates use Python format syntax with named placeholders only (``{instruction}``); the
training text is ``prompt_template`` and the loss is taken on the part ``completion_template``
renders, so ``input_template + completion_template`` should equal ``prompt_template``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from ftapp.errors import Problem

# Most likely output column first (seed 001 ranks common output names; the first match wins,
# and with no match the last column is the output).
OUTPUT_COLUMN_RANKING: tuple[str, ...] = (
    "output", "response", "completion", "answer", "target", "label", "labels", "intent",
    "assistant", "reply", "answers", "result", "outputs", "responses", "chosen", "solution",
    "summary", "translation", "sql", "query_output", "code", "generated", "gold", "expected",
    "expected_output", "ground_truth", "reference", "references", "text_output", "output_text",
    "completion_text", "final_answer", "rationale", "explanation", "class", "category",
    "sentiment", "tag", "tags", "y", "targets", "prediction", "action", "decision", "verdict",
    "score", "rating", "feedback", "correction", "rewrite", "paraphrase", "headline", "title",
)


@dataclass(frozen=True)
class GeneratedTemplates:
    prompt_template: str
    input_template: str
    completion_template: str
    output_column: str


def placeholders(template: str, field: str = "template") -> tuple[list[str], list[Problem]]:
    """Named placeholders in order of appearance, or PR-007 problems for bad syntax."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        return [], [Problem("PR-007", f"{field} is not a valid template ({error}); write a literal brace as '{{{{' or '}}}}'", field)]
    problems: list[Problem] = []
    for _literal, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            problems.append(Problem("PR-007", f"{field} has a positional placeholder '{{{name}}}'; name the column, e.g. '{{instruction}}'", field))
        elif any(c in name for c in ".["):
            problems.append(Problem("PR-007", f"{field} placeholder '{{{name}}}' uses attribute or index access; use a plain column name", field))
        elif name not in names:
            names.append(name)
    return names, problems


def check_templates(templates: dict[str, str], columns: list[str]) -> list[Problem]:
    """PR-006/PR-007 for each template field against the dataset's columns."""
    problems: list[Problem] = []
    for field, template in templates.items():
        names, syntax = placeholders(template, field)
        problems.extend(syntax)
        for name in names:
            if name not in columns:
                problems.append(Problem(
                    "PR-006",
                    f"{field} uses {{{name}}}, which is not a column of the dataset (columns: {', '.join(columns)})",
                    field,
                ))
    return problems


def render(template: str, row: dict) -> str:
    values = {k: "" if v is None else v for k, v in row.items()}
    return template.format_map(values)


def choose_output_column(columns: list[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in OUTPUT_COLUMN_RANKING:
        if name in lowered:
            return lowered[name]
    return columns[-1]


def _label(column: str) -> str:
    return column.replace("_", " ").strip().capitalize() or column


def generate_templates(columns: list[str]) -> GeneratedTemplates:
    if not columns:
        raise ValueError("a dataset without columns has no template")
    output = choose_output_column(columns)
    inputs = [c for c in columns if c != output]
    lines = ["You are an LLM responsible for generating a response. Please provide a response given the user input below.", ""]
    lines += [f"<{_label(c)}>: {{{c}}}" for c in inputs]
    lines.append(f"<{_label(output)}>: ")
    input_template = "\n".join(lines)
    completion_template = f"{{{output}}}\n"
    return GeneratedTemplates(input_template + completion_template, input_template, completion_template, output)
