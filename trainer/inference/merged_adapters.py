"""Copies of a model's LoRA layers' weights with their adapter folded in (``W + scaling * B @ A``), which the layers
use instead of base layer + adapter while a sampler decodes: a third of the kernels of a decode step are the adapters'
own small ones otherwise, and inside a CUDA graph each kernel still costs its few microseconds. The copies are refreshed
before each use (the adapter changed since: a GRPO step, another evaluation combination's turn)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from peft.tuners.lora import LoraLayer

MERGE_MEMORY_SHARE = 0.1  # of the free memory, by default: GRPO trains beside them


class MergedAdapters:
    """Copies of the LoRA layers' weights with their adapter folded in, which the layers use while sampling."""

    def __init__(self, layers: list[LoraLayer]):
        self.layers = layers
        self.weights = [torch.empty_like(layer.base_layer.weight) for layer in layers]

    @classmethod
    def build(cls, model: torch.nn.Module, memory_share: float = MERGE_MEMORY_SHARE) -> MergedAdapters | None:
        """None unless every adapted layer is a linear LoRA with one active adapter, every adapter it carries folds
        in as ``W + scaling * B @ A`` (no DoRA or other variant, no LoRA bias), and the copies fit ``memory_share`` of
        the free memory. A layer the active adapter skips, or whose adapters are disabled, copies the base weight."""
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        plain = all(
            isinstance(m.base_layer, torch.nn.Linear)
            and len(m.active_adapters) == 1
            and not m.merged
            and not getattr(m, "fan_in_fan_out", False)
            and all(
                not m.use_dora.get(name, False) and name not in getattr(m, "lora_variant", {}) and m.lora_B[name].bias is None
                for name in m.lora_A
            )
            for m in layers
        )
        if not layers or not plain:
            return None
        weight = layers[0].base_layer.weight
        needed = sum(m.base_layer.weight.numel() for m in layers) * weight.element_size()
        free = torch.cuda.mem_get_info(weight.device)[0] if weight.device.type == "cuda" else needed / memory_share
        return cls(layers) if needed <= memory_share * free else None

    @torch.no_grad()
    def refresh(self) -> None:
        for layer, merged in zip(self.layers, self.weights):
            name = layer.active_adapters[0]
            if layer.disable_adapters or name not in layer.lora_A:
                merged.copy_(layer.base_layer.weight)
                continue
            # One matmul writes W + scaling * B @ A straight into the copy, summed in float32 and rounded once (as
            # float32 temporaries of W and the delta would, at several times the memory traffic: 29 ms per refresh
            # of a 3B model on an H200); A and B in the weight's dtype, as the grouped decode holds them.
            b, a = (layer.lora_B[name].weight.to(merged.dtype), layer.lora_A[name].weight.to(merged.dtype))
            torch.addmm(layer.base_layer.weight, b, a, alpha=layer.scaling[name], out=merged)  # never in place

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The layers compute ``x @ merged.T + bias`` meanwhile (a graph captured then keeps doing so)."""
        saved = [layer.__dict__.get("forward") for layer in self.layers]
        for layer, merged in zip(self.layers, self.weights):
            bias = layer.base_layer.bias
            layer.forward = lambda x, *args, _w=merged, _b=bias, **kwargs: torch.nn.functional.linear(x, _w, _b)
        try:
            yield
        finally:
            for layer, forward in zip(self.layers, saved):
                if forward is None:
                    del layer.forward
                else:
                    layer.forward = forward
