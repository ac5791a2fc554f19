"""A compare request (one prompt, a base model and up to four of its adapters) and its rules CP-001..CP-009."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.errors import Problem
from ftapp.prompts.config_schemas import GenerationSettings, check_config
from ftapp.prompts.templates import placeholders
from storage import AdapterRecord, ModelRecord, Transaction

MAX_ADAPTERS = 4
MAX_NEW_TOKENS = 4096  # a playground answer; longer ones belong in an evaluation run
MAX_PROMPT_CHARS = 100_000  # a request body has no size limit: a bigger prompt would fill the worker's memory and the votes table
TIE = "tie"
DEFAULT_GENERATION: dict[str, Any] = {**asdict(GenerationSettings()), "max_new_tokens": 128}


@dataclass(frozen=True)
class CompareRequest:
    model_id: str
    adapter_ids: tuple[str, ...] = ()
    include_base: bool = True
    prompt: str = ""
    chat: bool = False  # send the prompt as one user turn through the tokenizer's chat template
    generation: dict[str, Any] = field(default_factory=dict)  # GenerationSettings fields; the rest default
    seed: int = 0
    blind: bool = False


def resolved_generation(request: CompareRequest) -> dict[str, Any]:
    """Every generation setting the worker will use: the request's over the playground defaults."""
    return {**DEFAULT_GENERATION, **request.generation}


def validate_compare(tx: Transaction, request: CompareRequest) -> list[Problem]:
    model = tx.models.get(request.model_id or "")
    problems = _model_problems(model, request.model_id)
    problems += _adapter_problems(tx, request, model)
    problems += _target_count_problems(request)
    if not request.prompt.strip():
        problems.append(Problem(rules.COMPARE_PROMPT, "the prompt is empty: type one or sample a dataset row", "prompt"))
    elif len(request.prompt) > MAX_PROMPT_CHARS:
        problems.append(
            Problem(rules.COMPARE_PROMPT, f"the prompt has {len(request.prompt):,} characters; at most {MAX_PROMPT_CHARS:,}", "prompt")
        )
    problems += _generation_problems(request.generation)
    if problem := nb.SEED.problem(rules.COMPARE_SEED, "seed", request.seed):
        problems.append(problem)
    return problems


def _model_problems(model: ModelRecord | None, model_id: str) -> list[Problem]:
    if not model_id:
        return [Problem(rules.COMPARE_MODEL, "choose a base model", "model_id")]
    if model is None:
        return [Problem(rules.COMPARE_MODEL, f"model '{model_id}' not found", "model_id")]
    if model.type not in ("huggingface", "project") or not model.source:
        return [
            Problem(
                rules.COMPARE_MODEL,
                f"model '{model.name}' has no weights to load here ({model.type}); register its files or Hub id",
                "model_id",
            )
        ]
    return []


def _adapter_problems(tx: Transaction, request: CompareRequest, model: ModelRecord | None) -> list[Problem]:
    problems: list[Problem] = []
    if len(set(request.adapter_ids)) != len(request.adapter_ids):
        problems.append(
            Problem(rules.COMPARE_ADAPTERS, "an adapter is listed twice; each output should come from a different adapter", "adapter_ids")
        )
    for adapter_id in request.adapter_ids:
        adapter = tx.adapters.get(adapter_id or "")
        if adapter is None:
            problems.append(Problem(rules.COMPARE_ADAPTERS, f"adapter '{adapter_id}' not found", "adapter_ids"))
        elif model is not None and adapter.model_id != model.id:
            base = tx.models.get(adapter.model_id)
            problems.append(
                Problem(
                    rules.COMPARE_ADAPTERS,
                    f"adapter '{adapter.name}' was trained on '{base.name if base else adapter.model_id}', not '{model.name}'",
                    "adapter_ids",
                )
            )
        elif not adapter_source(adapter):
            problems.append(Problem(rules.COMPARE_ADAPTERS, f"adapter '{adapter.name}' has no files or Hub id to load", "adapter_ids"))
    return problems


def adapter_source(adapter: AdapterRecord) -> str:
    """What the worker passes to PEFT: the local directory, else the Hub id."""
    return adapter.location or adapter.huggingface_name or ""


def _target_count_problems(request: CompareRequest) -> list[Problem]:
    outputs = len(request.adapter_ids) + (1 if request.include_base else 0)
    if len(request.adapter_ids) > MAX_ADAPTERS:
        return [
            Problem(
                rules.COMPARE_OUTPUTS, f"compare at most {MAX_ADAPTERS} adapters at once (got {len(request.adapter_ids)})", "adapter_ids"
            )
        ]
    if outputs == 0:
        return [Problem(rules.COMPARE_OUTPUTS, "nothing to generate: choose an adapter or include the base model", "adapter_ids")]
    if request.blind and outputs < 2:
        return [Problem(rules.COMPARE_OUTPUTS, "a blind A/B comparison needs at least two outputs", "blind")]
    return []


def _generation_problems(generation: dict[str, Any]) -> list[Problem]:
    problems = [Problem(rules.COMPARE_GENERATION, p.message, p.field) for p in check_config("generation_config", generation)]
    if problems:
        return problems
    values = {**DEFAULT_GENERATION, **generation}
    if values["num_beams"] != 1:
        problems.append(
            Problem(rules.COMPARE_GENERATION, "num_beams must be 1: answers stream token by token, which beam search cannot", "num_beams")
        )
    if values["max_new_tokens"] > MAX_NEW_TOKENS:
        problems.append(
            Problem(
                rules.COMPARE_GENERATION,
                f"max_new_tokens must be <= {MAX_NEW_TOKENS} in the playground (got {values['max_new_tokens']})",
                "max_new_tokens",
            )
        )
    return problems


def validate_sample(tx: Transaction, dataset_id: str, prompt_id: str, row_index: int) -> list[Problem]:
    """CP-007/CP-008 for sampling a prompt from a dataset row; the row's existence is checked on reading."""
    problems: list[Problem] = []
    dataset = tx.datasets.get(dataset_id or "")
    prompt = tx.prompts.get(prompt_id or "")
    if dataset is None:
        problems.append(Problem(rules.SAMPLE_PROMPT, f"choose a dataset to sample from (got {dataset_id!r})", "dataset_id"))
    if prompt is None:
        problems.append(
            Problem(rules.SAMPLE_PROMPT, f"choose a prompt whose input template renders the row (got {prompt_id!r})", "prompt_id")
        )
    elif not prompt.input_template.strip():
        problems.append(
            Problem(
                rules.SAMPLE_PROMPT, f"prompt '{prompt.name}' has no input template, so a row has no question part to send", "prompt_id"
            )
        )
    elif dataset is not None:
        names, syntax = placeholders(prompt.input_template, "input_template")
        missing = [n for n in names if n not in dataset.columns]
        if syntax or missing:
            problems.append(
                Problem(
                    rules.SAMPLE_PROMPT,
                    f"prompt '{prompt.name}' does not fit dataset '{dataset.name}' (columns it lacks: {', '.join(missing) or 'none'})",
                    "prompt_id",
                )
            )
    if isinstance(row_index, bool) or not isinstance(row_index, int) or row_index < 0:
        problems.append(Problem(rules.SAMPLE_ROW, f"row must be a whole number >= 0 (got {row_index!r})", "row_index"))
    elif dataset is not None and dataset.num_rows is not None and row_index >= dataset.num_rows:
        problems.append(
            Problem(
                rules.SAMPLE_ROW, f"row {row_index} is past the end: '{dataset.name}' has rows 0 to {dataset.num_rows - 1}", "row_index"
            )
        )
    return problems


def validate_vote(labels: tuple[str, ...], winner: str, finished: bool) -> list[Problem]:
    problems: list[Problem] = []
    if not finished:
        problems.append(Problem(rules.VOTE, "wait until every output has finished before voting", "winner"))
    if len(labels) < 2:
        problems.append(Problem(rules.VOTE, "a vote needs at least two outputs to choose between", "winner"))
    if winner != TIE and winner not in labels:
        problems.append(Problem(rules.VOTE, f"winner must be one of {', '.join(labels)} or '{TIE}' (got {winner!r})", "winner"))
    return problems
