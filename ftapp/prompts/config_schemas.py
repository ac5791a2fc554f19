"""Typed config blobs. Each dataclass validates itself; ``help`` metadata is the UI's help text.

A stored config is a JSON object whose keys are fields of one of these classes. Unknown keys are
refused (a typo like ``learning_rat`` would otherwise be ignored silently by the trainer), and
so are secret-looking keys: tokens live in Settings, never in configs.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.errors import Problem
from ftapp.number_bounds import Bound, shown_value
from ftapp.prompts.axolotl_formats import format_problem
from ftapp.secrets import SECRET_KEY, TOKEN_ADVICE, find_secrets
from storage import ConfigRecord
from trainer.protocol import DPO_LOSS_TYPES

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def _f(default: Any, help: str, bound: Bound | None = None, **extra: Any) -> Any:
    """A field with its help text; a numeric field names its ``Bound``, which the help states and CF-005 checks."""
    if bound is None:
        return field(default=default, metadata={"help": help, **extra})
    return field(
        default=default,
        metadata={
            "help": f"{help} Allowed: {bound.text}.",
            "bound": bound,
            # For tables that show the range (the Configs tab).
            "minimum": bound.low,
            "maximum": bound.high,
            "exclusive": bound.low_open,
            **extra,
        },
    )


@dataclass(frozen=True)
class TrainingSettings:
    num_train_epochs: float = _f(1.0, "Passes over the training split.", nb.EPOCHS)
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: run the epochs; not 0, which trains no step).", nb.STEPS.above(-1))
    learning_rate: float = _f(2e-4, "Peak learning rate.", nb.LEARNING_RATE)
    lr_scheduler_type: str = _f(
        "cosine",
        "Learning-rate schedule.",
        choices=("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr", "polynomial", "inverse_sqrt"),
    )
    warmup_ratio: float = _f(0.03, "Fraction of steps spent warming up the learning rate.", nb.RATIO)
    warmup_steps: int = _f(0, "Warm-up steps (overrides warmup_ratio when > 0).", nb.STEPS.above(0))
    weight_decay: float = _f(0.0, "AdamW weight decay.", nb.RATIO)
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 turns clipping off).", nb.FACTOR)
    optim: str = _f(
        "adamw_torch_fused",
        "Optimizer.",
        choices=(
            "adamw_torch",
            "adamw_torch_fused",
            "adamw_8bit",
            "paged_adamw_8bit",
            "paged_adamw_32bit",
            "adafactor",
            "sgd",
            "lion_32bit",
        ),
    )
    per_device_train_batch_size: int = _f(
        8, "Sequences per device per micro-batch (with padding_free, an upper bound next to max_tokens_per_batch).", nb.BATCH
    )
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.", nb.BATCH)
    max_tokens_per_batch: int = _f(
        0, "Token budget per micro-batch for padding-free batching (0: batch by sequence count).", nb.BATCH_TOKENS
    )
    per_device_eval_batch_size: int = _f(8, "Sequences per device when computing eval loss.", nb.BATCH)
    max_length: int = _f(1024, "Longest tokenized example; longer ones are truncated.", nb.TOKENS.above(8))
    packing: bool = _f(False, "Pack several examples into one sequence.")
    padding_free: bool = _f(True, "Concatenate examples without padding (needs flash or flex attention).")
    bf16: str = _f("auto", "bfloat16 mixed precision: auto (when the GPU supports it), true or false.", choices=("auto", "true", "false"))
    fp16: bool = _f(False, "float16 mixed precision (seed 001's default; translated to bf16 where weights are bf16).")
    gradient_checkpointing: str = _f(
        "auto",
        "Recompute activations to save memory: auto (only when memory requires it), true or false.",
        choices=("auto", "true", "false"),
    )
    use_liger_kernel: str = _f("auto", "Fused Liger kernels when installed: auto, true or false.", choices=("auto", "true", "false"))
    torch_compile: bool = _f(False, "Compile the model's repeated blocks with torch.compile.")
    completion_only_loss: bool = _f(True, "Train only on the completion part of each prompt.")
    assistant_only_loss: bool = _f(True, "For chat data, train only on assistant turns.")
    neftune_noise_alpha: float = _f(0.0, "NEFTune embedding noise (0: off).", nb.FACTOR)
    eval_strategy: str = _f("steps", "When to compute eval loss.", choices=("no", "steps", "epoch"))
    eval_steps: int = _f(50, "Eval loss every N optimizer steps (eval_strategy=steps).", nb.STEPS)
    save_strategy: str = _f("steps", "When to write checkpoints.", choices=("no", "steps", "epoch"))
    save_steps: int = _f(200, "Checkpoint every N steps (save_strategy=steps).", nb.STEPS)
    save_total_limit: int = _f(2, "Checkpoints kept on disk.", nb.CHECKPOINTS)
    logging_steps: int = _f(1, "Log loss every N steps.", nb.STEPS)
    seed: int = _f(42, "Random seed for initialisation, shuffling and the train/validation split.", nb.SEED)
    dataloader_num_workers: int = _f(0, "Data-loading worker processes.", nb.PROCESSES)
    report_to: str = _f("mlflow", "Experiment tracker.", choices=("mlflow", "none"))
    disable_tqdm: bool = _f(True, "Hide progress bars in the trainer log.")
    ddp_find_unused_parameters: bool = _f(False, "DDP: search for unused parameters (slow; only for odd models).")


@dataclass(frozen=True)
class LoraSettings:
    r: int = _f(16, "LoRA rank.", nb.LORA_RANK)
    lora_alpha: float = _f(32, "LoRA scaling numerator (scale = alpha / r).", nb.LORA_ALPHA)
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input.", nb.RATIO)
    bias: str = _f("none", "Which biases to train.", choices=("none", "all", "lora_only"))
    task_type: str = _f("CAUSAL_LM", "PEFT task type.", choices=("CAUSAL_LM",))
    target_modules: str | list[str] = _f(
        "all-linear", "Modules that get adapters: 'all-linear' or a list of names such as ['q_proj', 'v_proj']."
    )
    use_rslora: bool = _f(False, "Rank-stabilised scaling (alpha / sqrt(r)).")
    use_dora: bool = _f(False, "Weight-decomposed LoRA (slower, sometimes better).")
    modules_to_save: list[str] | None = _f(None, "Extra modules trained fully and saved with the adapter.")


@dataclass(frozen=True)
class BitsAndBytesSettings:
    load_in_4bit: bool = _f(True, "Load the base model in 4 bits (QLoRA).")
    load_in_8bit: bool = _f(False, "Load the base model in 8 bits.")
    bnb_4bit_quant_type: str = _f("nf4", "4-bit data type.", choices=("nf4", "fp4"))
    bnb_4bit_compute_dtype: str = _f("bfloat16", "Dtype the 4-bit matmuls compute in.", choices=("bfloat16", "float16", "float32"))
    bnb_4bit_use_double_quant: bool = _f(True, "Quantise the quantisation constants too (saves ~0.4 bit/param).")
    bnb_4bit_quant_storage: str = _f("uint8", "Storage dtype of the packed weights.", choices=("uint8", "bfloat16", "float16", "float32"))
    quant_method: str = _f("bitsandbytes", "Quantisation backend.", choices=("bitsandbytes",))


@dataclass(frozen=True)
class GenerationSettings:
    do_sample: bool = _f(False, "Sample (true) or decode greedily (false).")
    temperature: float = _f(1.0, "Sampling temperature.", nb.FACTOR.above(0, open=True))
    top_p: float = _f(1.0, "Nucleus sampling mass.", nb.FRACTION)
    top_k: int = _f(50, "Sample among the k most likely tokens (0: off).", nb.VOCABULARY)
    num_beams: int = _f(1, "Beam search width.", nb.BEAMS)
    repetition_penalty: float = _f(1.0, "Penalty for repeated tokens (1: off).", nb.FACTOR.above(0, open=True))
    max_new_tokens: int = _f(128, "Most tokens to generate.", nb.TOKENS)
    max_length: int | None = _f(None, "Prompt + generation length cap (null: unused).", nb.TOKENS)


@dataclass(frozen=True)
class DpoSettings:
    """DPO's own settings (``TrainSpec.method_settings``), named as TRL's DPOConfig names them."""

    beta: float = _f(
        0.1,
        "How far the model may move from the reference (the base or starting adapter): higher stays closer.",
        nb.FACTOR.above(0, open=True),
    )
    loss_type: str = _f(
        "sigmoid", "Preference loss: sigmoid is the DPO paper's; ipo, hinge, robust... are TRL's variants.", choices=DPO_LOSS_TYPES
    )


@dataclass(frozen=True)
class GrpoSettings:
    """GRPO's own settings (``TrainSpec.method_settings``), named as TRL's GRPOConfig names them."""

    num_generations: int = _f(
        4,
        "Completions sampled per prompt and compared with each other; the batch size times gradient accumulation must be a multiple of it.",
        nb.GENERATIONS,
    )
    max_completion_length: int = _f(64, "Most tokens generated per completion.", nb.TOKENS)
    temperature: float = _f(
        1.0, "Sampling temperature of the generations: higher gives more varied completions to compare.", nb.FACTOR.above(0, open=True)
    )
    beta: float = _f(0.0, "KL penalty towards the reference model (0: none, and no reference model is loaded).", nb.FACTOR)


SCHEMAS: dict[str, type[DataclassInstance]] = {
    "training_arguments": TrainingSettings,
    "lora_config": LoraSettings,
    "bitsandbytes_config": BitsAndBytesSettings,
    "generation_config": GenerationSettings,
    # Not stored configs (they are no CONFIG_TYPES): a run's method settings, checked by the same rules.
    "dpo_settings": DpoSettings,
    "grpo_settings": GrpoSettings,
}
METHOD_SCHEMAS = {"dpo": "dpo_settings", "grpo": "grpo_settings"}


def help_text(schema: type[DataclassInstance]) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(schema)}


def _type_matches(value: Any, annotation: Any) -> bool:
    hint = (
        eval(annotation, {"list": list, "str": str, "int": int, "float": float, "bool": bool})
        if isinstance(annotation, str)
        else annotation
    )
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return True
        if origin is bool and isinstance(value, bool):
            return True
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if origin is str and isinstance(value, str):
            return True
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return True
    return False


def _coerce_flag(value: Any, choices: tuple) -> Any:
    # "auto"/"true"/"false" fields also accept JSON booleans, as written by hand or by the seed.
    if isinstance(value, bool) and "true" in choices:
        return "true" if value else "false"
    return value


def check_config(config_type: str, values: Any) -> list[Problem]:
    """CF-005 problems for a parsed config: secrets in any kind, at any depth; fields of a typed kind."""
    secrets = secret_problems(values)
    if config_type == "axolotl_dataset_formats" and (unusable := format_problem(values)):
        return [*secrets, Problem(rules.CONFIG_FIELDS, unusable, "config")]
    schema = SCHEMAS.get(config_type)
    if schema is None:
        return secrets
    if not isinstance(values, dict):
        return [Problem(rules.CONFIG_FIELDS, f"a {config_type} config must be a JSON object, got {type(values).__name__}", "config")]
    known = {f.name: f for f in fields(schema)}
    problems: list[Problem] = secrets
    for key, value in values.items():
        if SECRET_KEY.search(key):
            if not any(p.field == key for p in secrets):
                problems.append(
                    Problem(
                        rules.CONFIG_FIELDS,
                        f"'{key}' looks like a secret; configs are stored in the database, exported and shown: {TOKEN_ADVICE}",
                        key,
                    )
                )
            continue
        spec = known.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(rules.CONFIG_FIELDS, f"unknown {config_type} field '{key}'{hint}", key))
            continue
        choices = spec.metadata.get("choices")
        value = _coerce_flag(value, choices or ())
        bound: Bound | None = spec.metadata.get("bound")
        if bound is not None and value is not None and (problem := bound.problem(rules.CONFIG_FIELDS, key, value)):
            problems.append(problem)  # finite, whole where integral, in range; a 1e30 for an int says so too
            continue
        if not _type_matches(value, spec.type):
            problems.append(Problem(rules.CONFIG_FIELDS, f"{key} must be {spec.type}, got {shown_value(value)}", key))
            continue
        if choices and value not in choices:
            problems.append(Problem(rules.CONFIG_FIELDS, f"{key} must be one of {', '.join(choices)} (got {shown_value(value)})", key))
    if config_type == "bitsandbytes_config" and values.get("load_in_4bit") and values.get("load_in_8bit"):
        problems.append(Problem(rules.CONFIG_FIELDS, "load_in_4bit and load_in_8bit cannot both be true", "load_in_8bit"))
    return problems


def secret_problems(values: Any) -> list[Problem]:
    """CF-005 for each secret a config would store in clear: a secret-looking key or a token-looking value."""
    problems = []
    for path, where in find_secrets(values):
        shown = path if len(path) <= 60 else path[:57] + "..."
        what = "looks like a secret" if where == "key" else "holds what looks like a Hugging Face token (hf_...)"
        problems.append(
            Problem(rules.CONFIG_FIELDS, f"'{shown}' {what}; configs are stored in the database, exported and shown: {TOKEN_ADVICE}", path)
        )
    return problems


def stored_config_problems(record: ConfigRecord, config_type: str, field: str) -> list[Problem]:
    """CF-005 for a stored config a request references, named by ``field``."""
    try:
        values = record.values
    except ValueError:
        return [Problem(rules.CONFIG_JSON, f"{field} '{record.name or record.id}' is not valid JSON", field)]
    return [
        Problem(rules.CONFIG_FIELDS, f"{field} '{record.name or record.id}': {p.message}", p.field)
        for p in check_config(config_type, values)
    ]


def resolve(schema: type[C], values: dict[str, Any]) -> C:
    """A validated config (``check_config`` found no problem) as its dataclass, with defaults for keys not given:
    what code past validation reads, by attribute."""
    known = {f.name: f for f in fields(schema)}
    cleaned = {k: _coerce_flag(v, known[k].metadata.get("choices") or ()) for k, v in values.items()}
    return schema(**cleaned)


def defaults(config_type: str) -> dict[str, Any]:
    return asdict(SCHEMAS[config_type]())
