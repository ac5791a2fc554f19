"""What DPO and GRPO add to a fine-tuning request, and its rules: the data fits the method (FT-017),
the rewards (FT-018), the method's settings and the adapter it starts from (FT-019).

The trainer reads only the spec, so everything it could trip over hours into a run is refused here:
a GRPO batch TRL cannot split into whole groups of generations, a regex that does not compile, a
custom reward file that is not there. Custom Python rewards run their sender's code on this host,
so they are refused unless the app is local and unshared (``Settings.allows_custom_code``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.errors import Problem
from ftapp.number_bounds import shown_value
from ftapp.prompts.config_schemas import METHOD_SCHEMAS, SCHEMAS, GrpoSettings, check_config, resolve
from ftapp.settings import Settings
from storage import DatasetRecord, ModelRecord, PromptRecord, Transaction
from trainer.protocol import CUSTOM_REWARD, REWARD_KINDS, RewardSpec

if TYPE_CHECKING:
    from ftapp.runs.fine_tune_request import FineTuneRequest

# Layouts whose rows carry their own prompt and answer: the trainer splits off the last answer.
CONVERSATIONAL_FORMATS = ("alpaca", "messages", "sharegpt")
STARTING_METHODS = ("dpo", "grpo")  # the methods that may continue an adapter (init_adapter)
REFERENCE_REWARDS = ("exact_match", "numeric_match")  # the rewards that compare with a row's reference
REWARD_FIELDS = tuple(f.name for f in fields(RewardSpec))


def resolved_settings(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The method's settings with defaults for keys not given; {} for SFT."""
    config_type = METHOD_SCHEMAS.get(method)
    return asdict(resolve(SCHEMAS[config_type], values)) if config_type else {}


def reward_spec(value: RewardSpec | dict[str, Any]) -> RewardSpec:
    """A reward as the protocol's dataclass; raises TypeError for a field it does not have."""
    return value if isinstance(value, RewardSpec) else RewardSpec(**value)


def reward_specs(rewards: tuple | list) -> tuple[RewardSpec, ...]:
    """The rewards as they go into the spec: a custom file as an absolute path (the trainer runs in its run folder)."""
    specs = []
    for reward in map(reward_spec, rewards):
        if reward.kind == CUSTOM_REWARD and reward.code_path:
            reward = RewardSpec(**{**reward.to_dict(), "code_path": str(Path(reward.code_path).expanduser().resolve())})
        specs.append(reward)
    return tuple(specs)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _custom_refusal(settings: Settings | None) -> str:
    where = (
        "this app is in demo mode"
        if settings and settings.demo
        else "this app is shared with other people (it serves allowed folders only)"
        if settings
        else "this request did not come from a local, unshared app"
    )
    return (
        f"custom Python rewards are refused: the code would run on this host with the app's rights, and {where}; "
        "run the app locally without sharing to use one, or choose from the built-in rewards"
    )


def _one_reward_problems(position: int, reward: RewardSpec, settings: Settings | None) -> list[Problem]:
    where, field = f"reward {position} ({reward.kind})", f"rewards[{position - 1}]"
    if reward.kind not in REWARD_KINDS:
        return [Problem(rules.REWARDS, f"reward {position}: unknown kind {reward.kind!r}; use one of {', '.join(REWARD_KINDS)}", field)]
    problems = []
    if not nb.REWARD_WEIGHT.allows(reward.weight):
        problems.append(
            Problem(rules.REWARDS, f"{where}: weight must be {nb.REWARD_WEIGHT.text} (got {shown_value(reward.weight)})", field)
        )
    if reward.kind == "regex_match":
        if not isinstance(reward.pattern, str) or not reward.pattern:
            problems.append(Problem(rules.REWARDS, f"{where}: a pattern is required (a Python regex the completion must match)", field))
        else:
            try:
                re.compile(reward.pattern)
            except re.error as error:
                problems.append(Problem(rules.REWARDS, f"{where}: pattern {reward.pattern!r} does not compile ({error})", field))
    elif reward.kind == "numeric_match" and not nb.REWARD_TOLERANCE.allows(reward.tolerance):
        problems.append(
            Problem(rules.REWARDS, f"{where}: tolerance must be {nb.REWARD_TOLERANCE.text} (got {shown_value(reward.tolerance)})", field)
        )
    elif reward.kind == "length_penalty" and not nb.CHARACTERS.allows(reward.target_length):
        problems.append(
            Problem(
                rules.REWARDS,
                f"{where}: target_length must be {nb.CHARACTERS.text} characters (got {shown_value(reward.target_length)})",
                field,
            )
        )
    elif reward.kind == CUSTOM_REWARD:
        if settings is None or not settings.allows_custom_code:
            problems.append(Problem(rules.REWARDS, f"{where}: {_custom_refusal(settings)}", field))
        elif not (isinstance(reward.code_path, str) and reward.code_path.endswith(".py") and Path(reward.code_path).expanduser().is_file()):
            problems.append(
                Problem(
                    rules.REWARDS,
                    f"{where}: code_path must be an existing .py file defining "
                    f"reward(completion, reference, row) (got {reward.code_path!r})",
                    field,
                )
            )
    return problems


def reward_problems(method: str, rewards: tuple | list, settings: Settings | None) -> list[Problem]:
    if method != "grpo":
        return (
            [Problem(rules.REWARDS, f"rewards are for GRPO runs; a {method} run takes none (got {len(rewards)})", "rewards")]
            if rewards
            else []
        )
    if not rewards:
        return [Problem(rules.REWARDS, f"GRPO needs at least one reward; choose from {', '.join(REWARD_KINDS)}", "rewards")]
    problems: list[Problem] = []
    specs: list[RewardSpec] = []
    for position, value in enumerate(rewards, start=1):
        try:
            reward = reward_spec(value)
        except TypeError:
            unknown = sorted(set(value) - set(REWARD_FIELDS)) if isinstance(value, dict) else []
            detail = (
                f"unknown field(s) {', '.join(unknown)}; a reward has {', '.join(REWARD_FIELDS)}"
                if unknown
                else (f"a reward is a RewardSpec or a dict with a kind (got {value!r})")
            )
            problems.append(Problem(rules.REWARDS, f"reward {position}: {detail}", f"rewards[{position - 1}]"))
            continue
        specs.append(reward)
        problems += _one_reward_problems(position, reward, settings)
    if specs and all(_number(r.weight) for r in specs) and all(r.weight == 0 for r in specs):
        problems.append(Problem(rules.REWARDS, "every reward weight is 0, so no completion would score better than another", "rewards"))
    return problems


def _grpo_batch_problems(values: dict[str, Any], training: dict[str, Any], processes: int) -> list[Problem]:
    generations = resolve(GrpoSettings, values).num_generations
    batch, accumulation = training.get("per_device_train_batch_size"), training.get("gradient_accumulation_steps")
    if not (isinstance(batch, int) and isinstance(accumulation, int)):
        return []  # CF-005 reports broken training arguments
    # TRL's GRPOConfig also wants the eval batch in whole groups; the trainer rounds that one up itself.
    effective = batch * processes * accumulation
    if effective % generations:
        return [
            Problem(
                rules.GRPO_GROUPS_FIT_BATCH,
                (
                    f"num_generations {generations} must divide the effective batch (per_device_train_batch_size {batch} × "
                    f"{processes} process(es) × gradient_accumulation_steps {accumulation} = {effective}): TRL's GRPO batches "
                    "count completions, and each prompt's completions must share a batch"
                ),
                "method_settings.num_generations",
            )
        ]
    return []


def settings_problems(request: FineTuneRequest, training: dict[str, Any]) -> list[Problem]:
    config_type = METHOD_SCHEMAS.get(request.method)
    if config_type is None:
        if request.method_settings:
            return [
                Problem(
                    rules.METHOD_SETTINGS,
                    f"method_settings are for DPO and GRPO; a {request.method} run takes its settings from "
                    f"the training arguments (got {', '.join(map(str, request.method_settings))})",
                    "method_settings",
                )
            ]
        return []
    problems = [
        Problem(rules.METHOD_SETTINGS, f"method_settings: {p.message}", f"method_settings.{p.field}")
        for p in check_config(config_type, request.method_settings)
    ]
    if request.method == "grpo" and not problems:
        problems += _grpo_batch_problems(request.method_settings, training, request.num_processes)
    return problems


def init_adapter_problems(tx: Transaction, request: FineTuneRequest, model: ModelRecord | None) -> list[Problem]:
    if not request.init_adapter_id:
        return []
    field = "init_adapter_id"
    if request.method not in STARTING_METHODS:
        return [
            Problem(
                rules.STARTING_ADAPTER,
                "a starting adapter (init_adapter_id) is for DPO and GRPO runs; an SFT run continues from a checkpoint with resume",
                field,
            )
        ]
    if request.training_mode == "full":
        return [
            Problem(rules.STARTING_ADAPTER, "a full fine-tune cannot start from an adapter; choose LoRA or QLoRA to continue it", field)
        ]
    adapter = tx.adapters.get(request.init_adapter_id)
    if adapter is None:
        return [Problem(rules.STARTING_ADAPTER, f"starting adapter '{request.init_adapter_id}' not found", field)]
    if not adapter.location:
        return [
            Problem(
                rules.STARTING_ADAPTER,
                f"starting adapter '{adapter.name}' has no local files ({adapter.type}); register its downloaded folder to start from it",
                field,
            )
        ]
    if not (Path(adapter.location) / "adapter_config.json").is_file():
        return [
            Problem(
                rules.STARTING_ADAPTER,
                f"starting adapter '{adapter.name}': {adapter.location} is gone or has no adapter_config.json",
                field,
            )
        ]
    if model is not None and adapter.model_id != model.id:
        trained_on = tx.models.get(adapter.model_id)
        return [
            Problem(
                rules.STARTING_ADAPTER,
                f"starting adapter '{adapter.name}' was trained on model "
                f"'{trained_on.name if trained_on else adapter.model_id}', not on '{model.name}'",
                field,
            )
        ]
    return []


def _reference_rewards(rewards: tuple | list) -> list[str]:
    kinds = [r.kind if isinstance(r, RewardSpec) else r.get("kind") if isinstance(r, dict) else None for r in rewards]
    return [str(kind) for kind in kinds if kind in REFERENCE_REWARDS]


def data_problems(method: str, dataset: DatasetRecord | None, prompt: PromptRecord | None, rewards: tuple | list = ()) -> list[Problem]:
    if dataset is None:
        return []
    name, layout = dataset.name, dataset.format
    if method == "sft" and layout == "preference":
        return [
            Problem(
                rules.DATA_FITS_METHOD,
                f"dataset '{name}' holds preference pairs (chosen/rejected): train it with DPO; SFT needs one answer per row",
                "dataset_id",
            )
        ]
    if method == "dpo" and layout != "preference":
        return [
            Problem(
                rules.DATA_FITS_METHOD,
                f"DPO trains on preference pairs, and dataset '{name}' is {layout} data; import rows with "
                "chosen and rejected (next to prompt, conversations or messages)",
                "dataset_id",
            )
        ]
    if method != "grpo":
        return []
    if layout == "preference":
        return [
            Problem(
                rules.DATA_FITS_METHOD,
                f"dataset '{name}' holds preference pairs (chosen/rejected); GRPO samples its own answers "
                "to prompts with a reference, so train preference pairs with DPO",
                "dataset_id",
            )
        ]
    if prompt is not None and not (prompt.input_template and prompt.completion_template):
        # Its rows are prompted with the whole template and have no reference: format rewards still score them.
        needing = sorted(set(_reference_rewards(rewards)))
        if not needing:
            return []
        rewards_named = f"the {needing[0]} reward compares" if len(needing) == 1 else f"the {' and '.join(needing)} rewards compare"
        return [
            Problem(
                rules.DATA_FITS_METHOD,
                f"{rewards_named} with a reference answer, and prompt "
                f"'{prompt.name}' lacks an input_template (the prompt) or a completion_template (the reference)"
                + (f"; or choose no prompt to use the {layout} layout" if layout in CONVERSATIONAL_FORMATS else ""),
                "prompt_id",
            )
        ]
    if prompt is None and layout not in CONVERSATIONAL_FORMATS:
        return [
            Problem(
                rules.DATA_FITS_METHOD,
                f"GRPO needs a prompt and a reference answer per row, and dataset '{name}' is {layout} data: "
                "choose a prompt whose input_template gives the prompt and completion_template the reference "
                "column (a prompt_template alone suits format rewards only)",
                "prompt_id",
            )
        ]
    return []


def method_problems(
    tx: Transaction,
    request: FineTuneRequest,
    model: ModelRecord | None,
    dataset: DatasetRecord | None,
    prompt: PromptRecord | None,
    training: dict[str, Any],
    settings: Settings | None,
) -> list[Problem]:
    """FT-017, FT-018 and FT-019 for one request."""
    if request.method not in ("sft", *STARTING_METHODS):
        return []  # FT-001 says so
    return (
        data_problems(request.method, dataset, prompt, request.rewards)
        + reward_problems(request.method, request.rewards, settings)
        + settings_problems(request, training)
        + init_adapter_problems(tx, request, model)
    )
