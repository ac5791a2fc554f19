"""Axolotl's dataset formats as ``axolotl_dataset_formats`` configs, and the prompt a run generates from one (seed 001).

Each format is a config whose description is the Axolotl dataset ``type`` and whose JSON maps the columns that type
reads to what each holds (stored with sorted keys, like every JSON config): a description that starts with "optional"
marks a column the type can do without, one that says "trained on" the column the loss is taken on (else ftapp's
usual guess of the output column). ftapp ships the common types (``ConfigService.ensure_presets`` installs them with
fixed ids in every home); a user adds others with ``ftapp configs add --type axolotl_dataset_formats``.

When an Axolotl run is given no prompt, ``format_templates`` builds one from the format its YAML's dataset type
names, as seed 001's ``_add_prompt_for_dataset`` did: ``<Feature>: {feature}`` per column, one per line, so that
evaluations and the adapter's lineage have a prompt; Axolotl itself formats the rows by its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftapp.prompts.templates import choose_output_column
from trainer.protocol import is_plain_field

OPTIONAL = "optional"
TRAINED = "trained on"
# Column descriptions differ between types that read the same columns: configs are deduplicated by content.
FORMATS: dict[str, dict[str, str]] = {
    "alpaca": {
        "instruction": "the task (alpaca)",
        "input": "optional: context for the task (alpaca)",
        "output": "the answer trained on (alpaca)",
    },
    "alpaca_chat": {
        "instruction": "the user's request (alpaca_chat, rendered as a chat turn)",
        "input": "optional: context for the request (alpaca_chat)",
        "output": "the assistant's answer trained on (alpaca_chat)",
    },
    "alpaca_w_system": {
        "system": "the system prompt (alpaca_w_system)",
        "instruction": "the task (alpaca_w_system)",
        "input": "optional: context for the task (alpaca_w_system)",
        "output": "the answer trained on (alpaca_w_system)",
    },
    "gpteacher": {
        "instruction": "the task (gpteacher)",
        "input": "optional: context for the task (gpteacher)",
        "response": "the answer trained on (gpteacher)",
    },
    "completion": {"text": "raw text, trained on in full (completion)"},
    "input_output": {"segments": "a list of {text, label} segments; label true marks the text trained on (input_output)"},
    "chat_template": {"messages": "a list of {role, content} turns rendered with the chat template (chat_template)"},
    "sharegpt": {"conversations": "a list of {from, value} turns (sharegpt; Axolotl reads it as chat_template)"},
    "context_qa": {
        "context": "the passage the question is about (context_qa)",
        "question": "the question (context_qa)",
        "answer": "the answer trained on (context_qa)",
    },
    "metharme": {"prompt": "the prompt (metharme)", "generation": "the generation trained on (metharme)"},
    "oasst": {"INSTRUCTION": "the instruction (oasst)", "RESPONSE": "the response trained on (oasst)"},
    "jeopardy": {
        "question": "the clue (jeopardy)",
        "category": "the category (jeopardy)",
        "answer": "the answer trained on (jeopardy)",
    },
    "summarizetldr": {"article": "the text to summarize (summarizetldr)", "summary": "the summary trained on (summarizetldr)"},
    "explainchoice": {
        "question": "the question (explainchoice)",
        "choices": "the choices (explainchoice)",
        "solution": "the chosen answer trained on (explainchoice)",
    },
}
MAX_COLUMNS = 64


@dataclass(frozen=True)
class FormatTemplates:
    prompt_template: str
    input_template: str
    completion_template: str
    missing: tuple[str, ...]  # required columns the dataset lacks: the prompt cannot be used then


def format_problem(values: Any) -> str | None:
    """Why ``values`` is no dataset format: a JSON object of 1-64 column names, each a plain template field, to text."""
    if not isinstance(values, dict) or not values:
        return "an axolotl_dataset_formats config is a JSON object of the columns a dataset type reads, each to what it holds"
    if len(values) > MAX_COLUMNS:
        return f"a dataset format names at most {MAX_COLUMNS} columns, got {len(values)}"
    for column, description in values.items():
        if not is_plain_field(column):
            return f"column {column[:60]!r} cannot be a template field (no braces, '.', '[', '!' or ':')"
        if not isinstance(description, str):
            return f"column '{column}' must map to a description (text), got {type(description).__name__}"
    return None


def _label(column: str) -> str:
    return column.replace("_", " ").strip().capitalize() or column


def format_templates(columns_read: dict[str, str], dataset_columns: list[str]) -> FormatTemplates:
    """seed 001's ``<Feature>: {feature}`` lines for the columns the dataset has, in its order, the trained one last."""
    missing = tuple(c for c, description in columns_read.items() if c not in dataset_columns and not description.startswith(OPTIONAL))
    output = next((c for c, description in columns_read.items() if TRAINED in description), choose_output_column(list(columns_read)))
    inputs = [c for c in dataset_columns if c in columns_read and c != output]
    input_template = "".join(f"<{_label(c)}>: {{{c}}}\n" for c in inputs) + f"<{_label(output)}>: "
    completion_template = f"{{{output}}}\n"
    return FormatTemplates(input_template + completion_template, input_template, completion_template, missing)
