"""What one (rows, cache length) shape of ``trainer.inference.graphed_sampler`` decodes with: a static KV cache, the
fixed buffers a captured decode step reads and writes (a CUDA graph replays on the same addresses), and once
captured, its graph."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel, StaticCache


class DecodeState:
    """The fixed buffers of one (rows, cache length) shape, its static cache and, once captured, its graph."""

    def __init__(self, model: PreTrainedModel, rows: int, length: int, max_new_tokens: int, device: torch.device):
        self.cache = StaticCache(config=model.config, max_cache_len=length)
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.allowed = torch.zeros(rows, length, dtype=torch.bool, device=device)  # which cache slots each row attends to
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)  # the cache slot of the token being fed
        self.step = torch.zeros(1, dtype=torch.long, device=device)  # the output column being written
        self.out = torch.zeros(rows, max_new_tokens, dtype=torch.long, device=device)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.min_new = torch.zeros(1, dtype=torch.long, device=device)  # no end of sequence before this output column
        self.graph: torch.cuda.CUDAGraph | None = None

    def reset_cache(self) -> None:
        self.set_cache_length(0)  # the slots before it are overwritten or masked: no need to clear them

    def set_cache_length(self, length: int) -> None:
        """The slot the next keys and values are written to (every row's)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(length)

    def snapshot(self) -> list[torch.Tensor]:
        return [buffer.clone() for buffer in self._buffers()]

    def restore(self, saved: list[torch.Tensor]) -> None:
        for buffer, value in zip(self._buffers(), saved):
            buffer.copy_(value)

    def _buffers(self) -> list[torch.Tensor]:
        every = [self.ids, self.positions, self.allowed, self.cursor, self.step, self.out, self.finished]
        return every + [layer.cumulative_length for layer in self.cache.layers]

    @contextlib.contextmanager
    def rows(self, start: int, end: int) -> Iterator[None]:
        """The cache as rows ``start:end`` alone (views of its tensors), for a prefill part of those rows."""
        whole = [(layer.keys, layer.values) for layer in self.cache.layers]
        for layer, (keys, values) in zip(self.cache.layers, whole):
            layer.keys, layer.values = keys[start:end], values[start:end]
        try:
            yield
        finally:
            for layer, (keys, values) in zip(self.cache.layers, whole):
                layer.keys, layer.values = keys, values
