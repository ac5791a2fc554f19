"""An evaluation request (N model/adapter combinations on one dataset) and EV-001..EV-013."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.demo import policy
from ftapp.errors import Problem
from ftapp.evaluation.benchmarks import benchmark_problems
from ftapp.evaluation.judging import JudgeRequest, judge_problems
from ftapp.evaluation.methods import PREFERENCE, evaluation_reward_problems, evaluation_rewards
from ftapp.prompts.config_schemas import check_config, stored_config_problems
from ftapp.prompts.templates import stored_template_problems
from ftapp.runs.devices import choose_devices
from ftapp.runs.machine import Machine
from ftapp.settings import Settings
from storage import Transaction
from trainer.protocol import RewardSpec


@dataclass(frozen=True)
class Combination:
    model_id: str
    adapter_id: str | None = None  # None or "": the base model alone


@dataclass(frozen=True)
class EvaluationRequest:
    dataset_id: str
    prompt_id: str
    combinations: tuple[Combination, ...] = field(default_factory=tuple)
    gpus: str = "auto"
    generation_config_id: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)  # GenerationSettings fields over the config
    dataset_fraction: float = 1.0  # used when no adapter's held-out split applies
    max_rows: int | None = None  # a seeded sample of the chosen rows, for a quick look
    seed: int = 42
    batch_size: int = 16
    # Rewards to score every generated answer with (RewardSpec or dicts of its fields); None: the rewards
    # of the adapters' GRPO run when they all come from GRPO runs with the same rewards, else none.
    rewards: tuple[RewardSpec | dict[str, Any], ...] | None = None
    # lm-evaluation-harness tasks every combination is scored on (then the dataset is optional), and/or every task of
    # a local folder of lm-eval task YAML files; at most benchmark_limit documents per task; few-shot: each task's own.
    benchmarks: tuple[str, ...] = ()
    benchmark_dir: str | None = None
    benchmark_limit: int | None = None
    benchmark_fewshot: int | None = None
    judge: JudgeRequest | None = None  # an LLM judge compares each combination's answers with #1's

    @property
    def has_benchmarks(self) -> bool:
        return bool(self.benchmarks or self.benchmark_dir)

    @property
    def adapter_ids(self) -> list[str]:
        return [c.adapter_id for c in self.combinations if c.adapter_id]

    @property
    def combination_text(self) -> str:
        return " ".join(f"{c.model_id}:{c.adapter_id}" if c.adapter_id else c.model_id for c in self.combinations)


CONVERSATIONAL_FORMATS = ("messages", "sharegpt", "alpaca")
# Rows that carry their own prompt and answer(s): a prompt is optional.
PROMPTLESS_FORMATS = (*CONVERSATIONAL_FORMATS, PREFERENCE)


def validate_evaluation(
    tx: Transaction, request: EvaluationRequest, machine: Machine, settings: Settings | None = None, caps: policy.DemoCaps | None = None
) -> list[Problem]:
    """Every problem of the request; ``settings`` says whether custom reward code may run (EV-013); ``caps``: a
    public demo visitor's request, held to the demo's rows (DM-001) and device choice (DM-005)."""
    problems: list[Problem] = []
    if not request.combinations:
        problems.append(Problem(rules.EVAL_COMBINATIONS, "give at least one model[:adapter] combination to evaluate", "combinations"))
    dataset = tx.datasets.get(request.dataset_id or "")
    if not request.dataset_id and not request.has_benchmarks:
        problems.append(Problem(rules.EVAL_DATASET_REQUIRED, "dataset_id is required (or benchmark tasks to score instead)", "dataset_id"))
    elif request.dataset_id and dataset is None:
        problems.append(Problem(rules.EVAL_DATASET, f"dataset '{request.dataset_id}' not found", "dataset_id"))
    if not request.dataset_id:
        pass  # benchmarks alone: no rows, so no prompt to map them
    elif not request.prompt_id:
        if dataset is None or dataset.format not in PROMPTLESS_FORMATS:
            problems.append(
                Problem(
                    rules.EVAL_PROMPT_REQUIRED,
                    "prompt_id is required"
                    + (f": dataset '{dataset.name}' has plain columns, and the prompt maps them to input and reference" if dataset else ""),
                    "prompt_id",
                )
            )
    else:
        prompt = tx.prompts.get(request.prompt_id)
        if prompt is None:
            problems.append(Problem(rules.EVAL_PROMPT, f"prompt '{request.prompt_id}' not found", "prompt_id"))
        elif syntax := stored_template_problems(prompt):
            problems += syntax  # PR-007: an imported prompt is checked before a trainer renders it
        elif not (prompt.input_template and prompt.completion_template) and (dataset is None or dataset.format not in PROMPTLESS_FORMATS):
            problems.append(
                Problem(
                    rules.EVAL_REFERENCE_ANSWERS,
                    f"prompt '{prompt.name}' has no input_template and completion_template, so rows have "
                    "no reference answer to score against",
                    "prompt_id",
                )
            )
    numbers = [
        ("dataset_fraction", request.dataset_fraction, nb.FRACTION),
        ("batch_size", request.batch_size, nb.BATCH),
        ("seed", request.seed, nb.SEED),
    ] + ([("max_rows", request.max_rows, nb.ROWS)] if request.max_rows is not None else [])
    problems += [p for field, value, bound in numbers if (p := bound.problem(rules.EVAL_ROW_LIMITS, field, value))]
    if request.generation_config_id:
        config = tx.configs.get(request.generation_config_id)
        if config is None or config.type != "generation_config":
            what = "not found" if config is None else f"a {config.type} config, not a generation_config"
            problems.append(
                Problem(
                    rules.EVAL_GENERATION_CONFIG, f"generation_config_id '{request.generation_config_id}' is {what}", "generation_config_id"
                )
            )
        else:
            problems += stored_config_problems(config, "generation_config", "generation_config_id")
    problems += check_config("generation_config", request.generation)
    if request.dataset_id:
        problems += evaluation_reward_problems(evaluation_rewards(tx, request.rewards, request.adapter_ids, dataset), dataset, settings)
    elif request.rewards:
        problems.append(Problem(rules.EVAL_REWARDS, "rewards score generated answers to a dataset's rows: give a dataset", "rewards"))
    problems += benchmark_problems(
        request.benchmarks, request.benchmark_dir, request.benchmark_limit, request.benchmark_fewshot, settings, caps
    )
    problems += judge_problems(
        tx, request.judge, dataset, len(request.combinations), dataset is not None and dataset.format != PREFERENCE, settings, caps
    )
    problems += choose_devices(request.gpus, machine, rules.EVAL_DEVICES)[1]
    for number, combo in enumerate(request.combinations, start=1):
        model = tx.models.get(combo.model_id or "")
        if model is None:
            problems.append(Problem(rules.EVAL_MODELS, f"combination {number}: model '{combo.model_id}' not found", "combinations"))
        if not combo.adapter_id:
            continue
        adapter = tx.adapters.get(combo.adapter_id)
        if adapter is None:
            problems.append(Problem(rules.EVAL_ADAPTERS, f"combination {number}: adapter '{combo.adapter_id}' not found", "combinations"))
        elif model is not None and adapter.model_id != model.id:
            base = tx.models.get(adapter.model_id)
            problems.append(
                Problem(
                    rules.EVAL_ADAPTERS,
                    f"combination {number}: adapter '{adapter.name}' was trained on '{base.name if base else adapter.model_id}', not '{model.name}'",
                    "combinations",
                )
            )
    if caps:
        problems += [p for p in (policy.eval_rows_problem(caps, request.max_rows or 0), policy.gpus_problem(request.gpus)) if p]
    return problems
