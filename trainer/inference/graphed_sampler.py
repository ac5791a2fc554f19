"""Sample completions with the decode step captured once as a CUDA graph (GRPO's ``graphed`` engine, issue 19).

Eager ``generate`` on a model of a billion or a few billion parameters is bound by kernel launches: each decode step
launches some 60 kernels a decoder layer (more with PEFT's adapters), each a few microseconds of work and tens of
Python. Here the prompts fill a static KV cache in one eager forward (the prefill), then one decode step — forward
over the last token, sampling, bookkeeping — is captured as a CUDA graph over fixed buffers and replayed once per
token. The graph reads the model's parameters where they live, so an optimizer step that updates them in place
(LoRA adapters included) is seen by the next replay: no copy of the weights, nothing to sync.

Sampling is the Gumbel-max trick (``argmax(logits / T + Gumbel noise)`` draws from ``softmax(logits / T)``), after
top-k and top-p filtering when asked; ``torch.rand`` inside a graph draws new numbers at each replay. A completion
ends after its first end-of-sequence token, as ``generate``'s do. Where capturing fails the same step runs eagerly.

With plain LoRA adapters and memory to spare (a copy of the adapted weights under ``MERGE_MEMORY_SHARE`` of the free
memory), each adapted layer samples with one matmul over a copy of its weight with the adapter folded in, refreshed
before every generation (the adapter changed since): a third of the kernels of a decode step are the adapters' own
small ones otherwise, and inside a graph each kernel still costs its few microseconds.

Keys: ``(rows, cache length)``, the prompts left-padded to a multiple of ``PROMPT_BUCKET`` tokens so a run's batches
share a few graphs; the least recently used are dropped beyond ``MAX_GRAPHS``.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer
from transformers import PreTrainedModel, StaticCache

PROMPT_BUCKET = 64
MERGE_MEMORY_SHARE = 0.1
CHECK_EVERY = 16  # decode steps between looks at whether every completion has ended (each look syncs)
MAX_GRAPHS = 3


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off


class _Decode:
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
        self.graph: torch.cuda.CUDAGraph | None = None

    def reset_cache(self) -> None:
        for layer in self.cache.layers:
            layer.cumulative_length.zero_()  # the slots before it are overwritten or masked: no need to clear them


class MergedAdapters:
    """Copies of the LoRA layers' weights with their adapter folded in, which the layers use while sampling."""

    def __init__(self, layers: list[LoraLayer]):
        self.layers = layers
        self.weights = [torch.empty_like(layer.base_layer.weight) for layer in layers]

    @classmethod
    def build(cls, model: torch.nn.Module) -> MergedAdapters | None:
        """None unless every adapted layer is a plain one-adapter linear LoRA and the copies fit the memory to spare."""
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        plain = all(
            isinstance(m.base_layer, torch.nn.Linear)
            and len(m.active_adapters) == 1
            and not m.merged
            and not m.use_dora.get(m.active_adapters[0], False)
            and not getattr(m, "fan_in_fan_out", False)
            and m.active_adapters[0] in m.lora_A
            for m in layers
        )
        if not layers or not plain:
            return None
        weight = layers[0].base_layer.weight
        needed = sum(m.base_layer.weight.numel() for m in layers) * weight.element_size()
        free = torch.cuda.mem_get_info(weight.device)[0] if weight.device.type == "cuda" else needed / MERGE_MEMORY_SHARE
        return cls(layers) if needed <= MERGE_MEMORY_SHARE * free else None

    @torch.no_grad()
    def refresh(self) -> None:
        for layer, merged in zip(self.layers, self.weights):
            name = layer.active_adapters[0]
            delta = layer.lora_B[name].weight.float() @ layer.lora_A[name].weight.float()
            merged.copy_(torch.add(layer.base_layer.weight.float(), delta, alpha=layer.scaling[name]))  # never in place

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


class GraphedSampler:
    def __init__(
        self,
        model: PreTrainedModel,
        *,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        sampling: Sampling,
        use_graphs: bool = True,
        merge_adapters: bool = True,
    ):
        self.model = model
        self.sampling = sampling
        self.pad = int(pad_token_id)
        self.device = next(model.parameters()).device
        self.eos = torch.tensor(sorted({int(t) for t in eos_token_ids}), dtype=torch.long, device=self.device)
        self.use_graphs = use_graphs and self.device.type == "cuda"
        parameters = inspect.signature(type(model).forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5.2x
        self._shapes: OrderedDict[tuple[int, int, int], _Decode] = OrderedDict()
        self.merged = MergedAdapters.build(model) if merge_adapters else None
        print(
            f"note: sampling with {'CUDA graphs' if self.use_graphs else 'eager decode steps'}, "
            f"{'adapters folded into weight copies' if self.merged else 'adapters as they are'}",
            file=sys.stderr,
            flush=True,
        )

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """One completion per prompt: token ids up to and including the first end-of-sequence token."""
        was_training = self.model.training
        self.model.eval()  # no dropout; and Trainer's gradient checkpointing only acts in training mode
        try:
            with self.merged.active() if self.merged else contextlib.nullcontext():
                if self.merged:
                    self.merged.refresh()  # the adapters moved since the last generation
                out = self._generate(prompts, max_new_tokens)
        finally:
            self.model.train(was_training)
        return [_until_eos(row, set(self.eos.tolist())) for row in out.tolist()]

    def _generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> torch.Tensor:
        rows = len(prompts)
        width = -(-max(len(p) for p in prompts) // PROMPT_BUCKET) * PROMPT_BUCKET
        key = (rows, width + max_new_tokens, max_new_tokens)
        state = self._shapes.pop(key, None)
        fresh = state is None
        if state is None:
            while len(self._shapes) >= MAX_GRAPHS:
                self._shapes.popitem(last=False)
            state = _Decode(self.model, rows, width + max_new_tokens, max_new_tokens, self.device)
        self._shapes[key] = state
        ids, mask = self._left_padded(prompts, width)
        if fresh and self.use_graphs and max_new_tokens > 1:
            self._prefill(state, ids, mask)  # the cache's tensors exist only once it has been written
            self._capture(state)
        self._prefill(state, ids, mask)
        for index in range(1, max_new_tokens):
            if state.graph is not None:
                state.graph.replay()
            else:
                self._step(state)
            if index % CHECK_EVERY == 0 and bool(state.finished.all()):
                break
        return state.out

    def _left_padded(self, prompts: Sequence[Sequence[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            if prompt:
                ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
                mask[row, width - len(prompt) :] = True
        return ids.to(self.device), mask.to(self.device)

    def _forward(self, state: _Decode, ids: torch.Tensor, mask4d: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        output = self.model(
            input_ids=ids,
            attention_mask=mask4d,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_argument: state.cache},
        )
        return output.logits[:, -1, :]

    def _prefill(self, state: _Decode, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Fill the cache with the prompts, sample each completion's first token, and set the decode buffers."""
        state.reset_cache()
        width, length = ids.shape[1], state.allowed.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        attend = causal[None] & mask[:, None, :]
        attend |= torch.eye(width, dtype=torch.bool, device=self.device)[None]  # a padding row attends to itself, not to nothing
        mask4d = torch.zeros(len(ids), 1, width, length, dtype=torch.bool, device=self.device)
        mask4d[:, 0, :, :width] = attend
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        first = self._sample(self._forward(state, ids, mask4d, positions))
        state.ids.copy_(first[:, None])
        state.positions.copy_(mask.sum(-1, keepdim=True))
        state.allowed.zero_()
        state.allowed[:, :width] = mask
        state.cursor.fill_(width)
        state.step.fill_(1)
        state.out.fill_(self.pad)
        state.out[:, 0] = first
        state.finished.copy_(torch.isin(first, self.eos))

    def _step(self, state: _Decode) -> None:
        """One token for every row, all on the GPU with fixed shapes and no host sync: what the graph holds."""
        state.allowed.index_fill_(1, state.cursor, True)
        logits = self._forward(state, state.ids, state.allowed[:, None, None, :], state.positions)
        token = torch.where(state.finished, self.pad, self._sample(logits))
        state.out.index_copy_(1, state.step, token[:, None])
        state.finished |= torch.isin(token, self.eos)
        state.ids.copy_(token[:, None])
        state.positions.add_(1)
        state.cursor.add_(1)
        state.step.add_(1)

    def _capture(self, state: _Decode) -> None:
        """Capture ``_step`` after two eager warm-up steps on a side stream (what CUDA graphs need first); on failure
        the steps run eagerly from then on."""
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step(state)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(state)
            state.graph = graph
        except Exception as error:  # a kernel that cannot be captured: eager steps are slower, not wrong
            print(f"note: sampling without CUDA graphs ({type(error).__name__}: {str(error)[:200]})", file=sys.stderr, flush=True)
            self.use_graphs = False
            torch.cuda.synchronize()

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.sampling.temperature <= 0:
            return logits.argmax(-1)
        logits = logits / self.sampling.temperature
        if 0 < self.sampling.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.sampling.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.sampling.top_p < 1.0:
            ordered, order = logits.sort(dim=-1, descending=True)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = (cumulative - ordered.softmax(-1)) > self.sampling.top_p  # keep the token that crosses top_p
            logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        noise = torch.rand_like(logits).clamp_(min=1e-20)  # [0, 1): log(-log(u)) stays finite
        return (logits - torch.log(-torch.log(noise))).argmax(-1)


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for index, token in enumerate(tokens):
        if token in eos:
            return tokens[: index + 1]
    return tokens
