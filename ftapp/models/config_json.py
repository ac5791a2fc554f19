"""What a model's config.json says, read as JSON: the UI process never imports transformers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelConfigInfo:
    architecture: str | None
    model_type: str | None
    num_parameters: int | None


def estimate_parameters(config: dict[str, Any]) -> int | None:
    """Parameter count of a decoder-only transformer from its config (no weights loaded).

    Exact for Llama/Qwen/Mistral-style blocks (gated MLP, GQA); an estimate for others. The
    preflight memory check needs the order of magnitude, not the last digit.
    """
    cfg = config.get("text_config", config)
    try:
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(cfg.get("num_attention_heads") or max(hidden // 64, 1))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    intermediate = int(cfg.get("intermediate_size") or 4 * hidden)
    attention = hidden * head_dim * (heads * 2 + kv_heads * 2)
    mlp = 3 * hidden * intermediate
    per_layer = attention + mlp + 2 * hidden
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings", False) else 2)
    return layers * per_layer + embeddings + hidden


def read_model_config(config: dict[str, Any]) -> ModelConfigInfo:
    architectures = config.get("architectures") or []
    return ModelConfigInfo(
        architecture=architectures[0] if architectures else None,
        model_type=config.get("model_type"),
        num_parameters=estimate_parameters(config),
    )


def load_config_file(path: Path) -> dict[str, Any]:
    """Raises OSError / ValueError with a readable message."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("config.json is not a JSON object")
    return data


def read_local_model_config(location: str) -> dict[str, Any] | None:
    try:
        return load_config_file(Path(location) / "config.json")
    except (OSError, ValueError):
        return None
