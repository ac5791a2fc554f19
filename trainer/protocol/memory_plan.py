"""How much GPU memory a training run needs, and the fastest recipe that fits the memory that is free (issue 19).

Standard library only, and in the protocol because both sides call it: ftapp's preflight (before any GPU time) and
the trainer's recipe (``trainer.training_arguments``, with the free memory measured at the start of the run). The
preflight therefore predicts what the trainer will do, and says it.

The model counts, per GPU: the weights at their precision; the trained parameters' gradients and AdamW moments
(fp32 for LoRA adapters, the weights' dtype for full fine-tuning, 8-bit with bitsandbytes); the activations autograd
keeps per token (all layers, or one hidden state per layer with checkpointing, or about one layer's worth when
checkpoints go to host memory); the fused LM head's tile (TRL 1.16 computes the loss in tiles: the chunked loss is
always on); a reference copy of the weights (DPO/GRPO full fine-tunes); GRPO's KV cache while sampling; and the CUDA
context plus allocator slack.

``plan_fit`` tries the levers from the cheapest to the dearest and keeps the fastest plan that fits: a smaller
micro-batch with more accumulation (the same rows per optimizer step; a micro-batch costs a fixed
``MICRO_BATCH_OVERHEAD_TOKENS`` worth of compute besides its tokens), activation checkpointing (one more forward:
x1.35 for adapters, x1.33 for full fine-tuning), checkpoints offloaded to host memory (SFT only, +15%), 8-bit
optimizer states (full fine-tuning, when bitsandbytes is there). What cannot fit any way gets advice: QLoRA, a
shorter max_length, or how much free memory would do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

GIB = 1024**3
CONTEXT_BYTES = int(0.75 * GIB)  # CUDA context, cuBLAS/cuDNN workspaces: outside PyTorch's allocator
ALLOCATOR_SLACK = 1.08  # the caching allocator's fragmentation over what tensors hold
USABLE_FRACTION = 0.95  # of the free memory a plan may fill; the rest absorbs estimate error
LORA_TRAINED_BYTES = 16  # fp32 adapter weight + gradient + two AdamW moments
LOSS_TILE_TOKENS = 1024  # positions the fused LM head projects at once (fp32 logits and their gradient)
MICRO_BATCH_OVERHEAD_TOKENS = 1024  # a micro-batch's fixed cost (launches, norms, LoRA's small matmuls) in tokens
# One more forward: over 6N (full) or 4N (adapters; 1.5 in FLOPs, 1.3-1.35 measured on 1B and 8B shapes, issue 19).
CHECKPOINT_COST = {"full": 8 / 6, "lora": 1.35, "qlora": 1.35}
OFFLOAD_COST = 1.15  # copies to and from pinned host memory, partly overlapped
OPTIMIZER_8BIT_COST = 1.02
ADAMW = frozenset({"adamw_torch", "adamw_torch_fused"})
BYTES_PER_WEIGHT = {"full": 2.0, "lora": 2.0, "qlora": 0.56}  # bf16; nf4 with double-quant constants (linear layers)


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from the model's config.json."""

    num_parameters: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    kv_size: int  # num_key_value_heads * head_dim
    embedding_parameters: int  # input embeddings plus an untied output head
    vocab_size: int = 0
    query_size: int = 0  # num_attention_heads * head_dim (the hidden size when 0)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape | None:
        """The shape a (text) config.json describes; None when it lacks the sizes."""
        config = config.get("text_config") or config
        try:
            hidden, layers, heads = int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["num_attention_heads"])
            head_dim = int(config.get("head_dim") or hidden // heads)
            kv_size = int(config.get("num_key_value_heads") or heads) * head_dim
            intermediate = int(config.get("intermediate_size") or 4 * hidden)
            vocab = int(config.get("vocab_size") or 0)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        if min(hidden, layers, heads, head_dim) <= 0:
            return None
        embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
        per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_size + 3 * hidden * intermediate
        return cls(embeddings + layers * per_layer, hidden, intermediate, layers, kv_size, embeddings, vocab, heads * head_dim)

    def lora_parameters(self, rank: int) -> int:
        """Adapter parameters of rank ``rank`` on every linear layer of the decoder (PEFT's "all-linear")."""
        h, q, kv, i = self.hidden_size, self.query_size or self.hidden_size, self.kv_size, self.intermediate_size
        per_layer = (h + q) * 2 + (h + kv) * 2 + (h + i) * 3  # q, o; k, v; gate, up, down
        return rank * per_layer * self.num_layers

    def activation_bytes_per_token(self, *, checkpointing: bool, liger: bool, offload: bool = False) -> int:
        """bf16 activations autograd keeps per token. Per layer without checkpointing: the residual
        and normed input of both halves, q/k/v, the attention output twice (kernel output and
        o_proj input) and the MLP's gate, up and product (Liger's SwiGLU recomputes the SiLU;
        without Liger the SiLU output and float32 norm intermediates are kept too). With
        checkpointing: one hidden state per layer plus one layer being recomputed; with those hidden
        states in host memory, about two layers' worth (one recomputed, one in flight)."""
        h, i = self.hidden_size, self.intermediate_size
        per_layer = 2 * (8 * h + 2 * self.kv_size + 3 * i)
        if not liger:
            per_layer += 2 * i + 4 * 4 * h
        if offload:
            return 2 * per_layer
        if checkpointing:
            return 2 * h * self.num_layers + per_layer
        return per_layer * self.num_layers

    def weight_bytes(self, training_mode: str) -> int:
        linear = self.num_parameters - self.embedding_parameters
        if training_mode == "qlora":
            return int(BYTES_PER_WEIGHT["qlora"] * linear + 2 * self.embedding_parameters)
        return int(BYTES_PER_WEIGHT[training_mode] * self.num_parameters)

    def static_bytes(self, training_mode: str, lora_rank: int = 16) -> int:
        """Weights plus the trained parameters' gradients and AdamW state (32-bit)."""
        return self.weight_bytes(training_mode) + trained_state_bytes(self, training_mode, lora_rank, optimizer_8bit=False)


def trained_state_bytes(shape: ModelShape, training_mode: str, lora_rank: int, *, optimizer_8bit: bool) -> int:
    if training_mode == "full":
        # bf16 weights are trained in place: a bf16 gradient and two moments like the weight (8-bit: one byte each).
        return shape.num_parameters * (2 + (2 if optimizer_8bit else 4))
    return shape.lora_parameters(lora_rank) * LORA_TRAINED_BYTES


@dataclass(frozen=True)
class Workload:
    """What one optimizer step trains, as the run asked for it."""

    training_mode: str  # lora | qlora | full
    rows: int  # per micro-batch: packed rows (padding-free SFT), examples, DPO pairs or GRPO completions
    accumulation: int  # micro-batches per optimizer step
    sequence_tokens: int  # the longest a row can be, in tokens (a DPO pair counts both sequences)
    sequences_per_row: int = 1  # DPO: 2 (chosen and rejected), so max_length is sequence_tokens / 2
    lora_rank: int = 16
    liger: bool = False
    reference_copy: bool = False  # a frozen second copy of the weights (DPO/GRPO full fine-tunes)
    generation_tokens: int = 0  # GRPO: tokens whose keys and values are cached while sampling
    optimizer: str = "adamw_torch_fused"
    shards: int = 1  # processes the weights and trained state are split over (FSDP2); 1: each process holds all of it

    @property
    def micro_batch_tokens(self) -> int:
        return self.rows * self.sequence_tokens


@dataclass(frozen=True)
class Levers:
    """What the plan may change. ``checkpointing``: None lets the plan decide, True/False is the user's word."""

    checkpointing: bool | None = None
    offload: bool = False  # the trainer can keep checkpoints in host memory (TRL's SFT activation offloading)
    optimizer_8bit: bool = False  # bitsandbytes is installed
    shrink: bool = True  # the micro-batch may get fewer rows (more accumulation)


@dataclass(frozen=True)
class Recipe:
    rows: int
    accumulation: int
    checkpointing: bool = False
    offload: bool = False
    optimizer_8bit: bool = False


@dataclass(frozen=True)
class MemoryNeed:
    weights: int
    trained_state: int
    activations: int
    loss_tile: int
    reference: int
    generation: int
    loading: int = 0  # a peak before training: QLoRA under FSDP2 quantizes the whole model on each GPU, then shards it

    @property
    def tensors(self) -> int:
        return self.weights + self.trained_state + self.activations + self.loss_tile + self.reference + self.generation

    @property
    def total(self) -> int:
        """The peak the GPU's used memory shows: what tensors hold (or held while loading), the allocator's slack and
        the CUDA context."""
        return int(ALLOCATOR_SLACK * max(self.tensors, self.loading)) + CONTEXT_BYTES


@dataclass(frozen=True)
class FitPlan:
    recipe: Recipe
    need: MemoryNeed
    free_bytes: int  # 0: unknown (nothing was checked)
    fits: bool
    slowdown: float  # time per token against the requested recipe had it fitted
    time_factor: float = 1.0  # time per token against the requested rows without checkpointing (for time estimates)
    changes: tuple[str, ...] = ()  # what the plan changed, and why
    advice: tuple[str, ...] = ()  # when nothing fits: what would


def memory_needed(shape: ModelShape, work: Workload, recipe: Recipe) -> MemoryNeed:
    tokens = recipe.rows * work.sequence_tokens
    per_token = shape.activation_bytes_per_token(checkpointing=recipe.checkpointing, liger=work.liger, offload=recipe.offload)
    vocab = shape.vocab_size or shape.embedding_parameters // max(1, shape.hidden_size)
    weights = shape.weight_bytes(work.training_mode)
    trained = trained_state_bytes(shape, work.training_mode, work.lora_rank, optimizer_8bit=recipe.optimizer_8bit)
    held, loading = weights, 0
    if work.shards > 1:
        held, trained = sharded_bytes(shape, work.training_mode, weights, trained, work.shards)
        loading = weights if work.training_mode == "qlora" else 0
    return MemoryNeed(
        weights=held,
        trained_state=trained,
        activations=tokens * per_token,
        loss_tile=min(tokens, LOSS_TILE_TOKENS) * vocab * 8,  # fp32 logits and their gradient
        reference=weights if work.reference_copy else 0,
        generation=work.generation_tokens * shape.num_layers * shape.kv_size * 4,  # bf16 keys and values
        loading=loading,
    )


def sharded_bytes(shape: ModelShape, training_mode: str, weights: int, trained: int, shards: int) -> tuple[int, int]:
    """Weights and trained state one GPU holds under FSDP2 (full shard): its slice of each, plus what is gathered whole
    at a time. Forward and backward gather a decoder layer while the next one's gather is in flight (two layers), the
    LM head stays gathered from the loss into the backward, and a full fine-tune holds one layer's unsharded gradients
    before their reduce-scatter. A full fine-tune trains fp32 master weights: accelerate upcasts trained parameters
    under FSDP2 mixed precision (weight, gradient and two AdamW moments, 4 bytes each; bf16 copies are gathered)."""
    per_layer = (shape.num_parameters - shape.embedding_parameters) // max(1, shape.num_layers)
    head = (shape.vocab_size or shape.embedding_parameters // max(1, shape.hidden_size)) * shape.hidden_size
    layer_bytes = BYTES_PER_WEIGHT[training_mode] * per_layer
    gathered = int((3 if training_mode == "full" else 2) * layer_bytes + 2 * head)
    if training_mode == "full":
        return -(-shape.num_parameters * 4 // shards) + gathered, -(-shape.num_parameters * 12 // shards)
    return -(-weights // shards) + gathered, -(-trained // shards)


def requested_recipe(work: Workload, checkpointing: bool) -> Recipe:
    return Recipe(work.rows, work.accumulation, checkpointing=checkpointing)


def plan_fit(shape: ModelShape, work: Workload, free_bytes: int, levers: Levers = Levers()) -> FitPlan:
    """The fastest recipe whose peak fits ``USABLE_FRACTION`` of ``free_bytes``, with the changes it made; or, when
    none does, the requested recipe with ``fits`` False and advice."""
    asked = requested_recipe(work, bool(levers.checkpointing))
    budget = int(USABLE_FRACTION * free_bytes)
    fitting = [
        (slowdown(work, asked, recipe), recipe)
        for recipe in _candidates(work, levers)
        if memory_needed(shape, work, recipe).total <= budget
    ]
    if not fitting:
        need = memory_needed(shape, work, asked)
        return FitPlan(
            asked,
            need,
            free_bytes,
            False,
            1.0,
            _cost(work, asked) / _cost(work, Recipe(work.rows, work.accumulation)),
            advice=tuple(advise(shape, work, free_bytes, levers)),
        )
    cost, best = min(fitting, key=lambda pair: (round(pair[0], 6), -pair[1].rows))
    need = memory_needed(shape, work, best)
    changes = tuple(_describe(shape, work, asked, best, free_bytes))
    return FitPlan(best, need, free_bytes, True, cost, _cost(work, best) / _cost(work, Recipe(work.rows, work.accumulation)), changes)


def slowdown(work: Workload, asked: Recipe, recipe: Recipe) -> float:
    """Time per trained token of ``recipe`` against ``asked``."""
    return _cost(work, recipe) / _cost(work, asked)


def _cost(work: Workload, recipe: Recipe) -> float:
    """Relative time per trained token: recomputation, offloading, 8-bit states, and the fixed cost of each
    micro-batch (smaller ones pay it more often)."""
    tokens = recipe.rows * work.sequence_tokens
    factor = (tokens + MICRO_BATCH_OVERHEAD_TOKENS) / tokens
    if recipe.checkpointing or recipe.offload:
        factor *= CHECKPOINT_COST[work.training_mode]
    if recipe.offload:
        factor *= OFFLOAD_COST
    if recipe.optimizer_8bit:
        factor *= OPTIMIZER_8BIT_COST
    return factor


def _candidates(work: Workload, levers: Levers) -> list[Recipe]:
    total_rows = work.rows * work.accumulation
    rows_options = [r for r in range(work.rows, 0, -1) if work.rows % r == 0] if levers.shrink else [work.rows]
    checkpoint_options = [levers.checkpointing] if levers.checkpointing is not None else [False, True]
    offload_options = [False, True] if levers.offload and levers.checkpointing is not False else [False]
    eight_bit = [False, True] if levers.optimizer_8bit and work.training_mode == "full" and work.optimizer in ADAMW else [False]
    return [
        Recipe(rows, total_rows // rows, checkpointing or offload, offload, bits)
        for rows, checkpointing, offload, bits in itertools.product(rows_options, checkpoint_options, offload_options, eight_bit)
        if not (offload and not checkpointing)
    ]


def _describe(shape: ModelShape, work: Workload, asked: Recipe, best: Recipe, free_bytes: int) -> list[str]:
    before = memory_needed(shape, work, asked).total
    why = f"the requested recipe needs ~{before / GIB:.1f} GiB, {free_bytes / GIB:.1f} GiB is free"
    changes = []
    if best.rows != asked.rows:
        changes.append(
            f"micro-batches of {best.rows} rows (up to {best.rows * work.sequence_tokens:,} tokens) accumulated "
            f"{best.accumulation}x instead of {asked.rows} x {asked.accumulation}: the same "
            f"{asked.rows * asked.accumulation} rows per optimizer step ({why})"
        )
    if best.offload:
        changes.append(f"gradient checkpointing on, with the checkpoints offloaded to host memory ({why})")
    elif best.checkpointing and not asked.checkpointing:
        changes.append(
            f"gradient checkpointing on: recomputing activations costs ~{(CHECKPOINT_COST[work.training_mode] - 1):.0%} "
            f"more time, less than any smaller micro-batch that fits without it ({why})"
        )
    if best.optimizer_8bit:
        changes.append(f"8-bit AdamW states (bitsandbytes) instead of {work.optimizer} ({why})")
    if changes:
        after = memory_needed(shape, work, best).total
        changes.append(
            f"planned peak ~{after / GIB:.1f} GiB of {free_bytes / GIB:.1f} GiB free, ~{slowdown(work, asked, best):.2f}x "
            "the time per token of the requested recipe"
        )
    return changes


def leanest_need(shape: ModelShape, work: Workload, levers: Levers) -> int:
    """The smallest peak any recipe reaches, every lever pulled (checkpointing too, whatever the user said)."""
    smallest = replace(levers, checkpointing=None, shrink=True)
    return min(memory_needed(shape, work, r).total for r in _candidates(work, smallest))


def advise(shape: ModelShape, work: Workload, free_bytes: int, levers: Levers) -> list[str]:
    """What would fit when nothing does: QLoRA, a shorter max_length, or a GPU with more free memory."""
    smallest = replace(levers, checkpointing=None, shrink=True)  # every lever, checkpointing too
    leanest = leanest_need(shape, work, levers)
    budget = int(USABLE_FRACTION * free_bytes)
    advice = []
    if levers.checkpointing is False and leanest <= budget:
        advice.append("gradient_checkpointing 'auto' (or 'true') would fit")
    if work.training_mode != "qlora":
        qlora = replace(work, training_mode="qlora", reference_copy=False)
        need = min(memory_needed(shape, qlora, r).total for r in _candidates(qlora, replace(smallest, optimizer_8bit=False)))
        if need <= budget:
            advice.append(f"QLoRA (training_mode 'qlora') would fit: ~{need / GIB:.1f} GiB")
    tokens = work.sequence_tokens
    while tokens > 64:
        tokens //= 2
        shorter = replace(work, sequence_tokens=tokens)
        if any(memory_needed(shape, shorter, r).total <= budget for r in _candidates(shorter, smallest)):
            per = work.sequences_per_row
            advice.append(f"a max_length of {tokens // per:,} tokens (instead of {work.sequence_tokens // per:,}) would fit")
            break
    advice.append(f"a GPU with ~{leanest / USABLE_FRACTION / GIB:.0f} GiB free would fit it as it is ({free_bytes / GIB:.1f} GiB is free)")
    return advice


def method_workload(
    method: str,
    training_mode: str,
    *,
    rows: int,
    accumulation: int,
    max_length: int,
    lora_rank: int = 16,
    liger: bool = False,
    optimizer: str = "adamw_torch_fused",
    prompt_tokens: int | None = None,
    completion_tokens: int = 0,
    beta: float = 0.0,
    shards: int = 1,
) -> Workload:
    """A run's workload as its method shapes the rows: an SFT row is up to ``max_length`` tokens (a packed row when
    padding-free); a DPO row is a pair, both sequences up to ``max_length``; a GRPO row is one completion of up to
    ``completion_tokens`` after its prompt, and the whole generation batch (``rows`` x ``accumulation``) holds its
    keys and values while sampling. Full fine-tunes of DPO (and GRPO with a KL term) keep a reference copy."""
    sft = Workload(
        training_mode,
        rows=rows,
        accumulation=accumulation,
        sequence_tokens=max_length,
        lora_rank=lora_rank,
        liger=liger,
        optimizer=optimizer,
        shards=shards,
    )
    if method == "dpo":
        return replace(sft, sequence_tokens=2 * max_length, sequences_per_row=2, reference_copy=training_mode == "full")
    if method == "grpo":
        sequence = min(prompt_tokens or max_length, max_length) + completion_tokens
        return replace(
            sft,
            sequence_tokens=sequence,
            reference_copy=training_mode == "full" and beta > 0,
            generation_tokens=rows * accumulation * sequence,
        )
    return sft


def method_levers(method: str, training_mode: str, checkpointing: str, *, bitsandbytes: bool, sharded: bool = False) -> Levers:
    """What the plan may change for this run: checkpointing unless the user said true/false (QLoRA's "auto" keeps it:
    its point is a small footprint), offloading where TRL offers it (SFT), 8-bit states where bitsandbytes is installed
    and the states are not sharded (bitsandbytes' 8-bit AdamW keeps no FSDP2 slices)."""
    wanted = None if checkpointing == "auto" else checkpointing == "true"
    if training_mode == "qlora" and wanted is None:
        wanted = True
    return Levers(checkpointing=wanted, offload=method == "sft", optimizer_8bit=bitsandbytes and not sharded)
