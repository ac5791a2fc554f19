"""Sample completions with the decode step captured once as a CUDA graph (GRPO's ``graphed`` engine, issue 19).

Eager ``generate`` on a model of a billion or a few billion parameters is bound by kernel launches: each decode step
launches some 60 kernels a decoder layer (more with PEFT's adapters), each a few microseconds of work and tens of
Python. Here the prompts fill a static KV cache in one eager forward (the prefill), then one decode step — forward
over the last token, sampling, bookkeeping — is captured as a CUDA graph over fixed buffers and replayed once per
token. The graph reads the model's parameters where they live, so an optimizer step that updates them in place
(LoRA adapters included) is seen by the next replay: no copy of the weights, nothing to sync.

Tokens are drawn inside the graph (``trainer.inference.token_sampling``). A completion ends after its first
end-of-sequence token, as ``generate``'s do. Where capturing fails the same step runs eagerly.

Llama-family RMSNorms run as PyTorch's fused kernel on CUDA while sampling (``trainer.inference.fused_norms``); the
prefill's attention avoids cuDNN's kernel, which plans every new shape (``trainer.inference.prefill_attention``).

With plain LoRA adapters and memory to spare (a copy of the adapted weights under ``MERGE_MEMORY_SHARE`` of the free
memory), each adapted layer samples with one matmul over a copy of its weight with the adapter folded in
(``trainer.inference.merged_adapters``), refreshed before every generation (the adapter changed since).

Keys: ``(rows, cache length)``, the prompts left-padded to a multiple of ``PROMPT_BUCKET`` tokens so a run's batches
share a few graphs; the least recently used are dropped beyond ``MAX_GRAPHS``.

Where every cache layer is a plain ``StaticLayer`` (full attention), the rows are sorted by length and prefilled in
parts of about ``PREFILL_TOKENS`` tokens, each padded to its own longest prompt, not to the batch's: with prompts
of 60 to 220 tokens a third of a one-part prefill was padding. ``answer`` (evaluation) also scores a given answer
after each prompt, teacher-forced, in that same prefill: the answer's keys and values land in the slots decoding
overwrites next, and the first generated token comes from the logits that score the answer's first token.

``answer`` also takes rows in equal ``Blocks`` (evaluation: one block of rows per adapter): each block is prefilled
as its own variant of the model, and every row decodes at once as the blocks' mixed variant (one grouped LoRA matmul
per layer), so a step's few thousand small kernels serve every block's rows instead of one adapter's.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedModel, StaticCache
from transformers.cache_utils import StaticLayer

from trainer.inference.decode_attention import decode_attention
from trainer.inference.decode_state import DecodeState
from trainer.inference.fused_norms import fused_norms
from trainer.inference.merged_adapters import MERGE_MEMORY_SHARE, MergedAdapters
from trainer.inference.prefill_attention import prefill_attention
from trainer.inference.token_sampling import Sampling, sample_tokens

PROMPT_BUCKET = 64
PREFILL_TOKENS = 8192  # padded tokens in one prefill forward, when the rows are prefilled in parts
SCORED_ROWS = 16  # rows whose answer logits go to float32 at once (rows x answer tokens x vocabulary x 4 bytes)
CHECK_EVERY = 16  # decode steps between looks at whether every completion has ended (each look syncs)
MAX_GRAPHS = 3


class Blocks(Protocol):
    """Rows in ``count`` equal blocks, block-major, each block answered by its own variant of the model."""

    count: int

    def prefill(self, block: int) -> contextlib.AbstractContextManager[None]:
        """The model as block ``block``'s variant alone."""
        ...

    def decode(self) -> contextlib.AbstractContextManager[None]:
        """The model computing each block's rows as its variant: a captured graph keeps what this sets up."""
        ...


@dataclass(frozen=True)
class Answered:
    completions: list[list[int]]
    log_likelihoods: list[float]  # per row: the sum of log p(answer token | prompt, answer tokens before it)


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
        merge_memory_share: float = MERGE_MEMORY_SHARE,
    ):
        self.model = model
        self.sampling = sampling
        self.pad = int(pad_token_id)
        self.device = next(model.parameters()).device
        self.eos = torch.tensor(sorted({int(t) for t in eos_token_ids}), dtype=torch.long, device=self.device)
        self.use_graphs = use_graphs and self.device.type == "cuda"
        parameters = inspect.signature(type(model).forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5.2x
        self._shapes: OrderedDict[tuple[int, int, int, bool], DecodeState] = OrderedDict()
        self._blocks: Blocks | None = None  # the blocks the graphs of block-mode shapes were captured with
        self.merged = MergedAdapters.build(model, merge_memory_share) if merge_adapters else None
        # Sliding-window and linear-attention layers keep their own positions: those models prefill in one part.
        self.scores_answers = all(type(layer) is StaticLayer for layer in StaticCache(config=model.config, max_cache_len=1).layers)
        print(
            f"note: sampling with {'CUDA graphs' if self.use_graphs else 'eager decode steps'}, "
            f"{'adapters folded into weight copies' if self.merged else 'adapters as they are'}",
            file=sys.stderr,
            flush=True,
        )

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, min_new_tokens: int = 0) -> list[list[int]]:
        """One completion per prompt: token ids up to and including the first end-of-sequence token (none among the
        first ``min_new_tokens``)."""
        return self._run(prompts, None, max_new_tokens, min_new_tokens).completions

    def answer(
        self,
        prompts: Sequence[Sequence[int]],
        answers: Sequence[Sequence[int]],
        max_new_tokens: int,
        *,
        min_new_tokens: int = 0,
        blocks: Blocks | None = None,
    ) -> Answered:
        """``generate``, and each answer's log-likelihood after its prompt, teacher-forced (needs ``scores_answers``).
        With ``blocks``, the rows are ``blocks.count`` equal blocks, block-major (needs ``merge_adapters=False``)."""
        if not self.scores_answers:
            raise ValueError("this model's cache has sliding-window or linear-attention layers: answers are scored apart")
        if blocks is not None and (self.merged is not None or len(prompts) % blocks.count):
            raise ValueError("blocks need equal blocks of rows and a sampler that does not fold adapters in")
        if blocks is not None and blocks is not self._blocks:
            self._shapes.clear()  # graphs captured for other blocks replay those blocks' adapters
            self._blocks = blocks
        return self._run(prompts, answers, max_new_tokens, min_new_tokens, blocks)

    @torch.no_grad()
    def _run(
        self,
        prompts: Sequence[Sequence[int]],
        answers: Sequence[Sequence[int]] | None,
        max_new_tokens: int,
        min_new: int,
        blocks: Blocks | None = None,
    ) -> Answered:
        was_training = self.model.training
        self.model.eval()  # no dropout; and Trainer's gradient checkpointing only acts in training mode
        try:
            with self.merged.active() if self.merged else contextlib.nullcontext(), fused_norms(self.model, self.device):
                if self.merged:
                    self.merged.refresh()  # the adapters moved since the last generation
                out, likelihoods = self._generate(prompts, answers, max_new_tokens, min_new, blocks)
        finally:
            self.model.train(was_training)
        eos = set(self.eos.tolist())
        return Answered([_until_eos(row, eos) for row in out.tolist()], likelihoods.tolist() if likelihoods is not None else [])

    def _generate(
        self,
        prompts: Sequence[Sequence[int]],
        answers: Sequence[Sequence[int]] | None,
        max_new_tokens: int,
        min_new: int,
        blocks: Blocks | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = len(prompts)
        size = rows // blocks.count if blocks is not None else rows
        # Longest first within each block, so that a prefill part holds rows of similar lengths; the caller's order
        # comes back at the end.
        order = [
            start + i
            for start in range(0, rows, size)
            for i in sorted(range(size), key=lambda i: -len(prompts[start + i]) - (len(answers[start + i]) if answers is not None else 0))
        ]
        prompts = [prompts[i] for i in order]
        answers = [answers[i] for i in order] if answers is not None else None
        width = _bucket(max(len(p) for p in prompts))
        room = _bucket(max((len(a) for a in answers), default=0)) if answers is not None else 0  # slots decoding overwrites
        length = width + max(max_new_tokens, room)
        key = (rows, length, max_new_tokens, blocks is not None)
        state = self._shapes.pop(key, None)
        fresh = state is None
        if state is None:
            while len(self._shapes) >= MAX_GRAPHS:
                self._shapes.popitem(last=False)
            state = DecodeState(self.model, rows, length, max_new_tokens, self.device)
        self._shapes[key] = state
        if not self.scores_answers:
            parts = [(0, rows, None)]
        else:
            parts = [
                (start + first, start + last, None if blocks is None else start // size)
                for start in range(0, rows, size)
                for first, last in _parts(prompts[start : start + size], answers[start : start + size] if answers is not None else None)
            ]
        likelihoods = self._prefill(state, prompts, answers, width, min_new, parts, blocks)
        with blocks.decode() if blocks is not None else contextlib.nullcontext():
            if fresh and self.use_graphs and max_new_tokens > 1:
                prefilled = state.snapshot()  # capturing runs warm-up steps, which move the buffers on
                self._capture(state)
                state.restore(prefilled)
            for index in range(1, max_new_tokens):
                if state.graph is not None:
                    state.graph.replay()
                else:
                    self._step(state)
                if index % CHECK_EVERY == 0 and bool(state.finished.all()):
                    break
        back = torch.tensor(order, device=self.device).argsort()
        return state.out[back], likelihoods[back] if likelihoods is not None else None

    def _forward(self, state: DecodeState, ids: torch.Tensor, mask4d: torch.Tensor, positions: torch.Tensor, keep: int = 1) -> torch.Tensor:
        columns = ids.shape[1]
        # Several last columns by index, not as a count: transformers slices a count as a strided view, which
        # torch.matmul cannot fold into one matmul, so the LM head ran as a batched matmul over the rows (H200, a 3B
        # model's prefill parts: aten::bmm at ~6 ms a call; the evaluation bench's prefill took 0.2 s longer that way).
        # Indexing gathers the columns into a contiguous block. A single column's view is contiguous already (decode
        # steps, sampling without scored answers). More columns than there are: all of them, as a count's slice gives.
        logits_to_keep = keep if keep == 1 else torch.arange(max(columns - keep, 0), columns, device=self.device)
        output = self.model(
            input_ids=ids,
            attention_mask=mask4d,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **{self._cache_argument: state.cache},
        )
        return output.logits

    def _prefill(
        self,
        state: DecodeState,
        prompts: list[Sequence[int]],
        answers: list[Sequence[int]] | None,
        width: int,
        min_new: int,
        parts: list[tuple[int, int, int | None]],
        blocks: Blocks | None,
    ) -> torch.Tensor | None:
        """Fill the cache with the prompts (and the answers after them), part by part of rows (``(start, end, block)``),
        sample each completion's first token, and set the decode buffers; returns each answer's log-likelihood. Every
        prompt ends at slot ``width``."""
        state.reset_cache()
        if len(parts) > 1:
            self._initialize_cache(state)
        state.min_new.fill_(min_new)
        first = torch.empty(len(prompts), dtype=torch.long, device=self.device)
        likelihoods = torch.zeros(len(prompts), dtype=torch.float32, device=self.device) if answers is not None else None
        for start, end, block in parts:
            own = max(len(p) for p in prompts[start:end]) if self.scores_answers else width
            extra = max((len(a) for a in answers[start:end]), default=0) if answers is not None else 0
            ids, mask = self._laid_out(prompts[start:end], answers[start:end] if answers is not None else None, own, extra)
            columns = own + extra
            causal = torch.ones(columns, columns, dtype=torch.bool, device=self.device).tril()
            attend = causal[None] & mask[:, None, :]
            attend |= torch.eye(columns, dtype=torch.bool, device=self.device)[None]  # a padding slot attends to itself, not to nothing
            mask4d = torch.zeros(end - start, 1, columns, state.allowed.shape[1], dtype=torch.bool, device=self.device)
            mask4d[:, 0, :, width - own : width - own + columns] = attend
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            with (
                state.rows(start, end) if len(parts) > 1 else contextlib.nullcontext(),
                blocks.prefill(block) if blocks is not None and block is not None else contextlib.nullcontext(),
                prefill_attention(),
            ):
                if self.scores_answers:
                    state.set_cache_length(width - own)
                # Logits column j (input column own - 1 + j) scores answer token j; column 0 also picks the first token.
                logits = self._forward(state, ids, mask4d, positions, keep=extra + 1)
            first[start:end] = self._sample(logits[:, 0], state.min_new > 0)
            if likelihoods is not None and extra:
                likelihoods[start:end] = _answer_log_likelihoods(logits, ids[:, own:], mask[:, own:])
        if self.scores_answers:
            state.set_cache_length(width)  # decoding overwrites the answers' slots, which stay masked until then
        lengths = self._to_device(torch.tensor([len(p) for p in prompts]))
        state.ids.copy_(first[:, None])
        state.positions.copy_(lengths[:, None])
        state.allowed.zero_()
        state.allowed[:, :width] = torch.arange(width, device=self.device)[None] >= width - lengths[:, None]
        state.cursor.fill_(width)
        state.step.fill_(1)
        state.out.fill_(self.pad)
        state.out[:, 0] = first
        state.finished.copy_(torch.isin(first, self.eos))
        return likelihoods

    def _laid_out(
        self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]] | None, width: int, extra: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask of ``width + extra`` columns: each prompt left-padded to end at ``width``, its answer after."""
        ids = torch.full((len(prompts), width + extra), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width + extra), dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            if prompt:
                ids[row, width - len(prompt) : width] = torch.tensor(list(prompt), dtype=torch.long)
                mask[row, width - len(prompt) : width] = True
            if answers is not None and answers[row]:
                ids[row, width : width + len(answers[row])] = torch.tensor(list(answers[row]), dtype=torch.long)
                mask[row, width : width + len(answers[row])] = True
        return self._to_device(ids), self._to_device(mask)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor on the device without waiting for the GPU: a copy from pageable memory first waits for every
        kernel queued before it, so a prefill in parts queued each part only once the GPU had run the last (a 3B
        model's 28 layers are a thousand launches; the 8-adapter bench's prefill went from 4.0 to 3.8 s)."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _initialize_cache(self, state: DecodeState) -> None:
        """Allocate every layer's cache for all rows (transformers does so at the first write) before a part writes
        into views of it: one token for every row, into slot 0, which the prefill then overwrites."""
        if all(layer.is_initialized for layer in state.cache.layers):
            return
        mask = torch.zeros(len(state.ids), 1, 1, state.allowed.shape[1], dtype=torch.bool, device=self.device)
        mask[..., 0] = True
        with prefill_attention():  # one call of this shape: a cuDNN plan for it would cost more than the call
            self._forward(state, state.ids, mask, state.positions)

    def _step(self, state: DecodeState) -> None:
        """One token for every row, all on the GPU with fixed shapes and no host sync: what the graph holds."""
        state.allowed.index_fill_(1, state.cursor, True)
        with decode_attention(self.model, self.device):
            logits = self._forward(state, state.ids, state.allowed[:, None, None, :], state.positions)[:, -1]
        token = torch.where(state.finished, self.pad, self._sample(logits, state.step < state.min_new))
        state.out.index_copy_(1, state.step, token[:, None])
        state.finished |= torch.isin(token, self.eos)
        state.ids.copy_(token[:, None])
        state.positions.add_(1)
        state.cursor.add_(1)
        state.step.add_(1)

    def _capture(self, state: DecodeState) -> None:
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

    def _sample(self, logits: torch.Tensor, eos_blocked: torch.Tensor | None = None) -> torch.Tensor:
        return sample_tokens(logits, self.sampling, self.eos, eos_blocked)


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for index, token in enumerate(tokens):
        if token in eos:
            return tokens[: index + 1]
    return tokens


def _bucket(tokens: int) -> int:
    return -(-tokens // PROMPT_BUCKET) * PROMPT_BUCKET


def _parts(prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]] | None) -> list[tuple[int, int]]:
    """Row ranges of rows sorted longest first, each about ``PREFILL_TOKENS`` tokens once padded to its longest row."""
    parts: list[tuple[int, int]] = []
    start, widest, longest = 0, 0, 0
    for row, prompt in enumerate(prompts):
        answer = len(answers[row]) if answers is not None else 0
        columns = max(widest, len(prompt)) + max(longest, answer)
        if row > start and (row - start + 1) * columns > PREFILL_TOKENS:
            parts.append((start, row))
            start, widest, longest = row, 0, 0
        widest, longest = max(widest, len(prompt)), max(longest, answer)
    parts.append((start, len(prompts)))
    return parts


def _answer_log_likelihoods(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probabilities of ``targets`` (rows x answer columns) where ``valid``, from logits whose
    column j predicts target column j; a few rows at a time, as float32 logits over a large vocabulary are big."""
    sums = []
    for start in range(0, len(logits), SCORED_ROWS):
        part = logits[start : start + SCORED_ROWS, : targets.shape[1]].float().log_softmax(-1)
        picked = part.gather(-1, targets[start : start + SCORED_ROWS, :, None]).squeeze(-1)
        sums.append(picked.masked_fill(~valid[start : start + SCORED_ROWS], 0.0).sum(-1))
    return torch.cat(sums)
