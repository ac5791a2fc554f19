"""The ``ftapp train`` command line that builds a given fine-tuning request, for the Train tab to show before Start.

Pasted into a shell, it gives the command line's parser the values of the request itself: numbers as Python
writes them (they read back as the same floats), ``--set`` values as JSON unless plain text reads back as
itself, rewards in the short ``KIND:WEIGHT,param=value`` form only where that form parses back unchanged.
``tests/ui/test_train_command.py`` parses the text with the real parser and compares the requests.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from typing import Any

from ftapp.runs.fine_tune_request import FineTuneRequest
from trainer.protocol import RewardSpec

MODE_FLAGS = {"lora": "--lora", "qlora": "--qlora", "full": "--full"}
REWARD_SETTINGS = ("pattern", "tolerance", "target_length", "code_path")
CONTINUATION = " \\\n  "


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def assignment_value(value: Any) -> str:
    """``value`` as the right side of ``--set key=...``: text that is no JSON stays as it is (the parser keeps
    it as text), everything else is JSON (so "true" the text and true the flag stay apart)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False)


def _readable_setting(key: str, value: Any) -> bool:
    """Whether ``key=value`` reads back as ``value``: text without commas (a comma starts the next setting), a
    float tolerance, a whole target length (the parser makes the first a float, the second an int)."""
    if key in ("pattern", "code_path"):
        return isinstance(value, str) and bool(value) and "," not in value
    if key == "tolerance":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return key == "target_length" and isinstance(value, int) and not isinstance(value, bool)


def _short_reward(reward: dict[str, Any]) -> str | None:
    """``KIND[:WEIGHT][,param=value...]`` when it parses back into ``reward``, else None."""
    kind, weight = reward.get("kind"), reward.get("weight")
    settings = {k: v for k, v in reward.items() if k not in ("kind", "weight")}
    plain = isinstance(kind, str) and bool(kind) and kind.strip() == kind and not any(c in kind for c in ":,=")
    numeric_weight = weight is None or (isinstance(weight, (int, float)) and not isinstance(weight, bool))
    if not (plain and numeric_weight and all(_readable_setting(k, v) for k, v in settings.items())):
        return None
    text = str(kind) + (f":{weight!r}" if weight is not None else "")
    return text + "".join(f",{key}={_number(value)}" for key, value in settings.items())


def reward_argument(reward: RewardSpec | dict[str, Any]) -> str:
    values = asdict(reward) if isinstance(reward, RewardSpec) else dict(reward)
    if isinstance(reward, RewardSpec):
        values = {k: v for k, v in values.items() if v is not None}
    return _short_reward(values) or json.dumps(values, ensure_ascii=False)


def train_command(request: FineTuneRequest, config_preset: str | None) -> str:
    """The command, one option per line; ``config_preset``: the shipped config preset its configs come from."""
    lines = ["ftapp train"]

    def add(flag: str, value: Any = None) -> None:
        lines.append(flag if value is None else f"{flag} {shlex.quote(_number(value))}")

    if request.base_model_id:
        add("--model", request.base_model_id)
    if request.dataset_id:
        add("--dataset", request.dataset_id)
    if request.prompt_id:
        add("--prompt", request.prompt_id)
    add("--name", request.adapter_name)  # even when empty: the command then says what the form says (FT-002)
    add("--method", request.method)
    if request.training_mode in MODE_FLAGS:
        add(MODE_FLAGS[request.training_mode])
    add("--gpus", request.gpus)
    add("--processes", request.num_processes)
    if request.strategy != "auto":
        add("--strategy", request.strategy)
    if request.framework != "trl":
        add("--framework", request.framework)
    if request.axolotl_config_id:
        add("--axolotl-config", request.axolotl_config_id)
    add("--epochs", request.num_epochs)
    add("--lr", request.learning_rate)
    add("--fraction", request.dataset_fraction)
    add("--split", request.train_test_split)
    if config_preset:
        add("--preset", config_preset)
    for key, value in request.overrides.items():
        add("--set", f"{key}={assignment_value(value)}")
    if "r" in request.lora_overrides:
        add("--lora-r", request.lora_overrides["r"])
    if "lora_alpha" in request.lora_overrides:
        add("--lora-alpha", request.lora_overrides["lora_alpha"])
    for key, value in request.method_settings.items():
        add("--method-set", f"{key}={assignment_value(value)}")
    for reward in request.rewards:
        add("--reward", reward_argument(reward))
    if request.init_adapter_id:
        add("--init-adapter", request.init_adapter_id)
    return CONTINUATION.join(lines)
