"""Adapters that take turns in the LoRA layers of one adapter PEFT has attached, instead of each being attached.

Attaching an adapter is mostly Python (finding the target modules, making two small layers for each, loading the
state dict through the whole model): 0.65 s for a 28-layer model with LoRA on every linear layer, 5 s of an
8-adapter evaluation on an H200 before its first answer. Adapters saved with the same configuration as the attached
one (rank, alpha, target modules...: PEFT would make the same layers with the same scaling) instead have their
weights read from their files once and copied into the attached adapter's tensors when their turn comes (a few
milliseconds); the graphed sampler then folds whatever those tensors hold into its weight copies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

WEIGHTS_FILE, CONFIG_FILE = "adapter_model.safetensors", "adapter_config.json"
# Configuration entries that change nothing an attached adapter computes at evaluation time.
_METADATA = {
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "peft_version",
    "auto_mapping",
    "task_type",
    "init_lora_weights",
    "lora_dropout",
}


class AdapterTurns:
    def __init__(self, model: PeftModel, slot: str, parameters: list[torch.Tensor], weights: dict[str, list[torch.Tensor]]):
        self.model = model
        self.slot = slot  # the attached adapter whose tensors the others borrow
        self.parameters = parameters
        self.weights = weights  # per adapter name, its tensors in the order of ``parameters``
        self.current = slot

    @classmethod
    def build(cls, model: PeftModel, slot: str, files: dict[str, str]) -> AdapterTurns | None:
        """Turns for every adapter in ``files`` (name -> folder, ``slot``'s own included), or None when one of them
        is not saved as a plain safetensors file of ``slot``'s configuration and layers."""
        named = {
            f"{path}.{part}.weight": getattr(layer, part)[slot].weight
            for path, layer in model.named_modules()
            if isinstance(layer, LoraLayer) and slot in layer.lora_A
            for part in ("lora_A", "lora_B")
        }
        config = _configuration(files[slot])
        if not named or config is None:
            return None
        weights: dict[str, list[torch.Tensor]] = {}
        device = next(iter(named.values())).device
        for name, folder in files.items():
            if _configuration(folder) != config or not (Path(folder) / WEIGHTS_FILE).is_file():
                return None
            saved = load_file(str(Path(folder) / WEIGHTS_FILE), device=str(device))
            if saved.keys() != named.keys() or any(saved[key].shape != tensor.shape for key, tensor in named.items()):
                return None
            weights[name] = [saved[key].to(tensor.dtype) for key, tensor in named.items()]
        return cls(model, slot, list(named.values()), weights)

    @torch.no_grad()
    def take(self, name: str) -> None:
        """``name``'s weights in the slot adapter's tensors, and the slot adapter active."""
        if name != self.current:
            for parameter, weight in zip(self.parameters, self.weights[name]):
                parameter.copy_(weight)
            self.current = name
        if self.model.active_adapter != self.slot:  # PEFT walks every module to switch
            self.model.set_adapter(self.slot)

    def restore(self) -> None:
        self.take(self.slot)


def _configuration(folder: str) -> dict[str, Any] | None:
    try:
        config = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    config = {key: value for key, value in config.items() if key not in _METADATA}
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return config
