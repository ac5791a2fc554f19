"""The Train tab's method fields: SFT, DPO or GRPO, each showing only what it needs.

DPO takes beta and a loss type; GRPO its generations, sampling, KL beta and a rewards table (one
row per reward kind: on/off, weight and its one setting). Both may start from an adapter of the
chosen base model (an SFT run's, say). The custom Python reward row is offered only where the app
may run code its visitors supply (``Settings.allows_custom_code``); the service refuses it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

from ftapp.prompts import DPO_LOSS_TYPES, DpoSettings, GrpoSettings, defaults, help_text
from ftapp.runs import CUSTOM_REWARD, REWARD_KINDS
from ftapp.services import Services
from ui.choices import Picker
from ui.errors import shows_errors

METHODS = [("SFT: supervised fine-tuning", "sft"), ("DPO: preference pairs", "dpo"), ("GRPO: verifiable rewards", "grpo")]
DATA_NEEDS = {
    "sft": "SFT needs alpaca, messages or sharegpt data, or plain columns with a prompt; not preference pairs.",
    "dpo": "DPO needs preference data: rows with chosen and rejected (next to prompt, conversations or messages).",
    "grpo": "GRPO needs prompts with a reference answer: alpaca, messages or sharegpt data, or a prompt whose "
    "completion template gives the reference column (format rewards alone need no reference); not preference pairs.",
}
NO_ADAPTER = "none"  # adapter ids are UUIDs, so this cannot name a real adapter
DPO_HELP, GRPO_HELP = help_text(DpoSettings), help_text(GrpoSettings)
REWARD_COLUMNS = ["use", "reward", "weight", "setting", "what it scores"]
# The one setting each reward kind has, and what its cell holds until the user changes it.
REWARD_SETTING = {"numeric_match": "tolerance", "regex_match": "pattern", "length_penalty": "target_length", CUSTOM_REWARD: "code_path"}
SETTING_DEFAULTS = {"numeric_match": "1e-06", "regex_match": "", "length_penalty": "200", CUSTOM_REWARD: ""}
SETTING_HINTS = {
    "numeric_match": "setting: tolerance",
    "regex_match": "setting: pattern",
    "length_penalty": "setting: target length (characters)",
    CUSTOM_REWARD: "setting: path to a .py file",
}


@dataclass(frozen=True)
class MethodWidgets:
    dpo: gr.Column
    grpo: gr.Column
    start: gr.Column
    start_adapter: gr.Dropdown
    inputs: dict[str, gr.components.Component]  # by the names of TrainForm's method fields


class MethodView(NamedTuple):
    """What the chosen method shows: the dataset picker's hint and each method's fields."""

    dataset: Any
    dpo: Any
    grpo: Any
    start: Any


def reward_rows(allows_custom_code: bool) -> list[list[Any]]:
    """The rewards table as it opens: exact match on, the rest off; custom code only where allowed."""
    rows = []
    for kind, help_line in REWARD_KINDS.items():
        if kind == CUSTOM_REWARD and not allows_custom_code:
            continue
        hint = f" ({SETTING_HINTS[kind]})" if kind in SETTING_HINTS else ""
        rows.append([kind == "exact_match", kind, 1.0, SETTING_DEFAULTS.get(kind, ""), help_line + hint])
    return rows


def _rows(table: Any) -> list[list[Any]]:
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):  # a pandas DataFrame
        return table.values.tolist()
    if isinstance(table, dict):
        return list(table.get("data") or [])
    return [list(row) for row in table]


def _on(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on", "✓")


def _setting(kind: str, raw: Any) -> Any:
    # Numbers that do not parse are passed on as typed, so FT-018 names them.
    text = "" if raw is None else str(raw).strip()
    try:
        if kind == "numeric_match":
            return float(text) if text else None
        if kind == "length_penalty":
            return int(float(text)) if text and float(text).is_integer() else (text or None)
    except ValueError:
        return text
    return text or None


def rewards_from_table(table: Any) -> tuple[dict[str, Any], ...]:
    """The rows switched on, as reward dicts (kind, weight and the kind's one setting)."""
    rewards = []
    for row in _rows(table):
        use, kind, weight, setting = (list(row) + [None] * 4)[:4]
        if not _on(use):
            continue
        reward: dict[str, Any] = {"kind": str(kind), "weight": 1.0 if weight in (None, "") else weight}
        if isinstance(reward["weight"], str):
            try:
                reward["weight"] = float(reward["weight"])
            except ValueError:
                pass  # FT-018 says the weight is not a number
        name = REWARD_SETTING.get(str(kind))
        value = _setting(str(kind), setting)
        if name and value is not None:
            reward[name] = value
        rewards.append(reward)
    return tuple(rewards)


def method_settings(
    method: str,
    dpo_beta: float | None,
    loss_type: str | None,
    generations: float | None,
    completion_length: float | None,
    temperature: float | None,
    grpo_beta: float | None,
) -> dict[str, Any]:
    """The chosen method's settings that are filled in; a cleared field takes the default."""
    if method == "dpo":
        values = {"beta": dpo_beta, "loss_type": loss_type}
    elif method == "grpo":
        values = {
            "num_generations": None if generations is None else int(generations),
            "max_completion_length": None if completion_length is None else int(completion_length),
            "temperature": temperature,
            "beta": grpo_beta,
        }
    else:
        return {}
    return {key: value for key, value in values.items() if value is not None}


def show_method(method: str | None) -> MethodView:
    """Only the chosen method's fields, and the dataset picker saying which layouts it needs."""
    chosen = method or "sft"
    return MethodView(
        dataset=gr.Dropdown(info=DATA_NEEDS.get(chosen, "")),
        dpo=gr.Column(visible=chosen == "dpo"),
        grpo=gr.Column(visible=chosen == "grpo"),
        start=gr.Column(visible=chosen in ("dpo", "grpo")),
    )


@shows_errors
def starting_adapters(services: Services, model_id: str | None, selected: str | None) -> gr.Dropdown:
    """Adapters on the chosen base model that have files to continue from."""
    adapters = [a for a in services.adapters.list(model_id) if a.location] if model_id else []
    choices = [("none: start from the base model", NO_ADAPTER)] + [(a.name, a.id) for a in adapters]
    values = [value for _, value in choices]
    return gr.Dropdown(choices=choices, value=selected if selected in values else NO_ADAPTER)


def _number(label: str, value: float, help_text: str, elem_id: str, precision: int | None = 0) -> gr.Number:
    # No minimum: FT-019 names the field and its range; gradio's own check would name neither.
    return gr.Number(label=label, value=value, info=help_text, precision=precision, elem_id=elem_id)


def render_fields(services: Services) -> MethodWidgets:
    """The method fields, hidden until their method is chosen (SFT needs none)."""
    dpo, grpo = defaults("dpo_settings"), defaults("grpo_settings")
    with gr.Column(visible=False) as dpo_fields:
        gr.Markdown("#### DPO")
        with gr.Row():
            dpo_beta = _number("Beta", dpo["beta"], DPO_HELP["beta"], "train-dpo-beta", precision=None)
            loss_type = gr.Dropdown(
                label="Loss type",
                choices=list(DPO_LOSS_TYPES),
                value=dpo["loss_type"],
                info=DPO_HELP["loss_type"],
                elem_id="train-dpo-loss-type",
            )
    with gr.Column(visible=False) as grpo_fields:
        gr.Markdown("#### GRPO")
        with gr.Row():
            generations = _number("Generations per prompt", grpo["num_generations"], GRPO_HELP["num_generations"], "train-grpo-generations")
            completion_length = _number(
                "Max completion length (tokens)",
                grpo["max_completion_length"],
                GRPO_HELP["max_completion_length"],
                "train-grpo-completion-length",
            )
            temperature = _number("Temperature", grpo["temperature"], GRPO_HELP["temperature"], "train-grpo-temperature", precision=None)
            grpo_beta = _number("KL beta", grpo["beta"], GRPO_HELP["beta"], "train-grpo-beta", precision=None)
        rewards = gr.Dataframe(
            value=reward_rows(services.settings.allows_custom_code),
            headers=REWARD_COLUMNS,
            datatype=["bool", "str", "number", "str", "str"],
            type="array",
            interactive=True,
            wrap=True,
            static_columns=[1, 4],
            column_widths=["7%", "16%", "9%", "20%", "48%"],
            elem_id="train-grpo-rewards",
            label="Rewards (tick the ones to use; a completion's reward is their weighted sum)",
        )
    with gr.Column(visible=False) as start_fields:
        start_adapter = Picker(
            label="Start from adapter",
            choices=[("none: start from the base model", NO_ADAPTER)],
            value=NO_ADAPTER,
            elem_id="train-start-adapter",
            info="Keep training an adapter of this base model (e.g. an SFT run's) instead of a new one.",
        )
    return MethodWidgets(
        dpo_fields,
        grpo_fields,
        start_fields,
        start_adapter,
        {
            "dpo_beta": dpo_beta,
            "dpo_loss_type": loss_type,
            "num_generations": generations,
            "max_completion_length": completion_length,
            "temperature": temperature,
            "grpo_beta": grpo_beta,
            "rewards": rewards,
            "init_adapter_id": start_adapter,
        },
    )
