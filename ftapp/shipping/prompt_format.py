"""How an adapter was trained to be prompted, so that serving and GGUF exports prompt it the same way.

The trainer's rule (``trainer.data.training_data``): a prompt with an input and a completion template trains on
raw text, the rendered input template (trailing spaces cut) followed by the completion; a prompt template
alone trains on raw text throughout; conversations (messages, sharegpt, alpaca rows) train through the
tokenizer's chat template. An adapter's training run says which (its spec's data); an adapter registered with
a prompt but no run has that prompt's templates; a model alone, or an adapter nobody can say anything about,
is prompted through its chat template when it has one. Wrapping a raw-text adapter's prompt in a chat template
puts it in a context the model never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ftapp.datasets import files as dataset_files
from ftapp.errors import FtappError
from ftapp.home_paths import require_inside
from ftapp.prompts.templates import render
from ftapp.runs.specs import UnreadableSpecError, run_spec
from ftapp.settings import Settings
from storage import AdapterRecord, ModelRecord, RunRecord, Transaction
from trainer.protocol import TrainSpec

CHAT, TEXT = "chat", "text"


@dataclass(frozen=True)
class TrainingFormat:
    prompt_format: str  # chat | text
    input_template: str | None  # text: the template a prompt is rendered from; None: free text, or chat
    why: str  # for people: where this was read from
    dataset_id: str | None = None  # the data it was trained on, for an example prompt


def training_format(tx: Transaction, model: ModelRecord, adapter: AdapterRecord | None) -> TrainingFormat:
    run = tx.runs.get(adapter.run_id) if adapter is not None and adapter.run_id else None
    found = _from_run(run) if run is not None else None
    if found is not None:
        return found
    if adapter is not None and adapter.prompt_id:
        prompt = tx.prompts.get(adapter.prompt_id)
        if prompt is not None and prompt.input_template and prompt.completion_template:
            return TrainingFormat(TEXT, prompt.input_template, f"trained with prompt '{prompt.name}' on raw text", prompt.dataset_id)
    folder = (adapter.location if adapter is not None else None) or model.location
    if (
        folder
        and not has_chat_template(Path(folder))
        and not (adapter is not None and model.location and has_chat_template(Path(model.location)))
    ):
        return TrainingFormat(TEXT, None, "the tokenizer has no chat template: prompts are raw text")
    what = "the model" if adapter is None else "no training run or prompt is recorded for this adapter, so it"
    return TrainingFormat(CHAT, None, f"{what} is prompted through its chat template")


def _from_run(run: RunRecord) -> TrainingFormat | None:
    """The format the run trained on; None when its spec cannot say (an imported row of another version)."""
    try:
        data = run_spec(run, TrainSpec).data
    except UnreadableSpecError:
        return None
    if data.input_template and data.completion_template:
        return TrainingFormat(
            TEXT,
            data.input_template,
            f"trained by run {run.id[:8]} on raw text: the prompt's input template, then its completion",
            run.dataset_id,
        )
    if data.prompt_template:
        return TrainingFormat(TEXT, None, f"trained by run {run.id[:8]} on raw text (a prompt template alone)", run.dataset_id)
    return TrainingFormat(
        CHAT, None, f"trained by run {run.id[:8]} on {data.format} conversations through the chat template", run.dataset_id
    )


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def prompt_for(input_template: str, row: dict) -> str:
    """A row as the adapter saw it in training: the input template rendered, its trailing spaces cut (they went to
    the completion, see ``trainer.data.training_data.prompt_at_token_boundary``)."""
    return render(input_template, row, "input_template").rstrip(" ")


def example_prompt(settings: Settings, tx: Transaction, found: TrainingFormat) -> str | None:
    """The first row of the training data as a client sends it; None for chat, free text, or data not on this machine."""
    if found.prompt_format != TEXT or not found.input_template or not found.dataset_id:
        return None
    dataset = tx.datasets.get(found.dataset_id)
    if dataset is None or not dataset.location or dataset.type == "huggingface":
        return None
    try:
        path = require_inside(settings, dataset.location, f"dataset {dataset.name!r}: location", "location")
        rows = (
            dataset_files.read_directory_rows(path, 0, 1)
            if dataset.type == "project"
            else dataset_files.read_rows(path, dataset.type, 0, 1)
        )
        return prompt_for(found.input_template, rows[0]) if rows else None
    except (FtappError, OSError):  # an example is a courtesy: the endpoint works without one
        return None
