"""Prompt templates and typed configs: create, check (PR-, CF-), render, presets, chat previews.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.prompts.chat_preview import CHAT_FORMATS, Segment, chat_preview_by_id
from ftapp.prompts.config_schemas import (
    DPO_LOSS_TYPES,
    SCHEMAS,
    DpoSettings,
    GenerationSettings,
    GrpoSettings,
    LoraSettings,
    TrainingSettings,
    check_config,
    defaults,
    help_text,
)
from ftapp.prompts.configs import CONFIG_TYPES, AddConfigRequest, Preset, parse_config
from ftapp.prompts.presets import DESCRIPTIONS, MODERN
from ftapp.prompts.service import AddPromptRequest

__all__ = [
    "AddConfigRequest",
    "AddPromptRequest",
    "CHAT_FORMATS",
    "chat_preview_by_id",
    "check_config",
    "CONFIG_TYPES",
    "defaults",
    "DESCRIPTIONS",
    "DPO_LOSS_TYPES",
    "DpoSettings",
    "GenerationSettings",
    "GrpoSettings",
    "help_text",
    "LoraSettings",
    "MODERN",
    "parse_config",
    "Preset",
    "SCHEMAS",
    "Segment",
    "TrainingSettings",
]
