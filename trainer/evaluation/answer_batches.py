"""How the combinations of one loaded base model answer the evaluation rows, batch after batch.

Graphed, where ``trainer.inference.graphed_sampler`` reproduces the run's generation settings (greedy or plain
sampling: no beams, penalties or stop strings): CUDA-graph decoding over a static cache, the reference answers scored
in the same prefill. Its decode step is over a thousand small kernels whatever the rows (8.7 ms for 128 rows of a
3B model on an H200, of which reading the weights and the cache takes about 3), so the more rows a step carries the
better:

* in turn, where the rows fill a chunk of ``batch_size x combinations`` rows: chunk by chunk, each combination
  answers the whole chunk with its adapter folded into a copy of the weights (a refresh of a few milliseconds; the
  base combination copies the base weights), one matmul per layer, the chunk's graph captured once and replayed for
  every combination;
* in blocks, where they do not (say 8 adapters and 128 rows, which would make 128-row steps): every combination's
  copy of ``batch_size`` rows decodes in one step, each block through its own adapter with one grouped LoRA matmul
  per layer (``GroupedLora``), each block prefilled with its adapter alone (folded into weight copies where they fit).

Mixed otherwise (and for LoRA variants that do not fold in, adapters with their own modules such as a trained
``lm_head``, or copies that do not fit in memory): every combination answers the same rows in one mixed-adapter
``generate`` per batch, then one teacher-forced pass scores the references (eager decoding: on an H200 a batch of
512 sequences x 128 tokens of a 3B model took 19 s to answer and score, the GPU waiting on Python).

Either way a step holds at most ``batch_size x combinations`` sequences, what one mixed batch held.

Adapters the caller has not attached take turns in the attached one's tensors where their files allow
(``trainer.evaluation.adapter_turns``); otherwise they are attached here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from peft import PeftModel
from peft.utils.other import AuxiliaryTrainingWrapper
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from trainer.evaluation.adapter_turns import AdapterTurns
from trainer.inference.generation import (
    BASE_ADAPTER,
    Generated,
    GroupedLora,
    answer_log_likelihood,
    decode_completions,
    generate_batch,
    stop_ids,
)
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.merged_adapters import MergedAdapters
from trainer.inference.token_sampling import Sampling

# Evaluation trains nothing: the folded copies may take half the free memory (GRPO's sampler leaves it a tenth).
MERGE_MEMORY_SHARE = 0.5

# generate() settings the graphed sampler does not reproduce, with the value that means "off".
_UNSUPPORTED: dict[str, object] = {
    "num_beams": 1,
    "num_return_sequences": 1,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_length": 0,
    "min_p": None,
    "penalty_alpha": None,
    "bad_words_ids": None,
    "force_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "stop_strings": None,
    "watermarking_config": None,
}


@dataclass(frozen=True)
class AnswerBatch:
    """``combinations`` each answered every row of ``rows`` (case indices); ``generated`` and ``scored`` (the reference
    answer's log-likelihood and token count) run combination-major: the first combination's rows first."""

    combinations: list[int]  # positions in the group's combination list
    rows: list[int]
    generated: Generated
    scored: list[tuple[float, int]]


def answer_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: GenerationConfig,
    adapters: list[str],
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    order: list[int],
    batch_size: int,
    files: dict[str, str] | None = None,
) -> Iterator[AnswerBatch]:
    """Every row of ``order`` answered by every combination (``adapters[k]``: combination k's adapter name).

    ``files``: every adapter's folder by name, where some are not attached to ``model`` yet (the first one is)."""
    files = files or {}
    missing = {name: folder for name, folder in files.items() if name not in getattr(model, "peft_config", {})}
    turns = None
    if missing and graphed_sampling(config) is not None:
        slot = next((name for name in adapters if name in files and name not in missing), None)
        turns = AdapterTurns.build(model, slot, {name: files[name] for name in adapters if name in files}) if slot else None
    if missing and turns is None:  # the adapters cannot take turns: attached like the first one
        attach(model, missing)
    if len(adapters) > 1 and len(order) < batch_size * len(adapters):
        sampler = graphed_sampler(model, tokenizer, config, adapters, fold=False)
        blocks = AdapterBlocks.build(model, adapters, turns) if sampler is not None else None
        if sampler is not None and blocks is not None:
            yield from blocked_batches(model, sampler, blocks, tokenizer, config, prompts, answers, order, batch_size)
            return
    sampler = graphed_sampler(model, tokenizer, config, adapters)
    if sampler is None:
        if turns is not None:
            attach(model, missing)
        yield from mixed_batches(model, tokenizer, config, adapters, prompts, answers, order, batch_size)
    else:
        yield from graphed_batches(model, sampler, tokenizer, config, adapters, prompts, answers, order, batch_size * len(adapters), turns)


def attach(model: PreTrainedModel, adapters: dict[str, str]) -> None:
    for name, folder in adapters.items():
        model.load_adapter(folder, adapter_name=name, low_cpu_mem_usage=True)


def graphed_sampling(config: GenerationConfig) -> Sampling | None:
    """The sampler's settings for a generation config it reproduces, else None."""
    if not config.max_new_tokens or any(getattr(config, name, off) not in (None, off) for name, off in _UNSUPPORTED.items()):
        return None
    if not config.do_sample:
        return Sampling(temperature=0.0)
    return Sampling(
        temperature=config.temperature if config.temperature is not None else 1.0, top_k=config.top_k or 0, top_p=config.top_p or 1.0
    )


def graphed_sampler(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: GenerationConfig, adapters: list[str], fold: bool = True
) -> GraphedSampler | None:
    """A sampler every combination can share, or None where the mixed batches must answer. ``fold``: adapters in
    turn, folded into weight copies (else the caller decodes them in blocks)."""
    sampling = graphed_sampling(config)
    if sampling is None:
        return None
    peft = isinstance(model, PeftModel)
    if peft and any(isinstance(module, AuxiliaryTrainingWrapper) for module in model.modules()):
        return None  # an adapter's own copy of a module (modules_to_save, trainable tokens): a graph would keep one
    sampler = GraphedSampler(
        model.get_base_model() if peft else model,
        eos_token_ids=sorted(stop_ids(config, tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
        sampling=sampling,
        merge_adapters=fold,
        merge_memory_share=MERGE_MEMORY_SHARE,
    )
    if not sampler.scores_answers or (fold and peft and len(adapters) > 1 and sampler.merged is None):
        return None  # unfolded adapters inside a graph: the graph would replay the adapter it was captured with
    return sampler


def graphed_batches(
    model: PreTrainedModel,
    sampler: GraphedSampler,
    tokenizer: PreTrainedTokenizerBase,
    config: GenerationConfig,
    adapters: list[str],
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    order: list[int],
    chunk_rows: int,
    turns: AdapterTurns | None = None,
) -> Iterator[AnswerBatch]:
    """Chunk by chunk, each combination in turn: the chunks' shapes repeat, so each graph is captured once."""
    assert config.max_new_tokens is not None
    stops = stop_ids(config, tokenizer)
    active = model.active_adapter if isinstance(model, PeftModel) else None
    try:
        for start in range(0, len(order), max(1, chunk_rows)):
            chunk = order[start : start + chunk_rows]
            for number, adapter in enumerate(adapters):
                with only_adapter(model, adapter, turns):
                    began = time.perf_counter()
                    answered = sampler.answer(
                        [prompts[i] for i in chunk],
                        [answers[i] for i in chunk],
                        config.max_new_tokens,
                        min_new_tokens=config.min_new_tokens or 0,
                    )
                    seconds = time.perf_counter() - began  # answer() returns lists: the GPU is done
                texts, counts = decode_completions(tokenizer, answered.completions, stops)
                scored = [(likelihood, len(answers[i])) for likelihood, i in zip(answered.log_likelihoods, chunk)]
                yield AnswerBatch([number], chunk, Generated(texts, counts, seconds), scored)
    finally:
        if turns is not None:
            turns.restore()  # the slot adapter's own weights back
        if isinstance(model, PeftModel) and isinstance(active, str):
            model.set_adapter(active)  # as loaded: later stages pass adapter names per row anyway


class AdapterBlocks:
    """The graphed sampler's ``Blocks``: block k of the rows answered by ``adapters[k]``."""

    def __init__(
        self,
        model: PreTrainedModel,
        adapters: list[str],
        turns: AdapterTurns | None,
        grouped: GroupedLora,
        folded: MergedAdapters | None = None,
    ):
        self.model = model
        self.adapters = adapters
        self.turns = turns
        self.grouped = grouped
        self.folded = folded  # weight copies each block prefills with, its adapter folded in
        self.folded_block: int | None = None  # the block whose adapter the copies hold (evaluation changes no weights)
        self.count = len(adapters)

    @classmethod
    def build(cls, model: PreTrainedModel, adapters: list[str], turns: AdapterTurns | None) -> AdapterBlocks | None:
        """None unless every adapter's LoRA stacks into ``GroupedLora`` (plain LoRA, no variant such as DoRA)."""
        borrowing = [turns is not None and name in turns.weights for name in adapters]
        grouped = GroupedLora.build(model, [turns.slot if borrows and turns else name for name, borrows in zip(adapters, borrowing)])
        if grouped is None:
            return None
        for block, name in enumerate(adapters):
            if borrowing[block] and turns is not None:
                turns.take(name)
                grouped.fill(block, turns.slot)
        # Prefilling through PEFT's unfolded layers (three matmuls and a few small kernels each) took a 3B model 2.35 s
        # for 8 blocks of 64 rows on an H200; with the adapter folded into weight copies first, one matmul each.
        return cls(model, adapters, turns, grouped, MergedAdapters.build(model, MERGE_MEMORY_SHARE))

    @contextlib.contextmanager
    def prefill(self, block: int) -> Iterator[None]:
        with only_adapter(self.model, self.adapters[block], self.turns):
            if self.folded is None:
                yield
                return
            if self.folded_block != block:  # a block's rows are prefilled in parts, one after the other
                self.folded.refresh()  # this block's adapter, as only_adapter left the layers
                self.folded_block = block
            with self.folded.active():
                yield

    def decode(self) -> contextlib.AbstractContextManager[None]:
        return self.grouped.active()


def blocked_batches(
    model: PreTrainedModel,
    sampler: GraphedSampler,
    blocks: AdapterBlocks,
    tokenizer: PreTrainedTokenizerBase,
    config: GenerationConfig,
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    order: list[int],
    batch_size: int,
) -> Iterator[AnswerBatch]:
    """Batch by batch of rows, every combination's copy of them decoding together, a block each."""
    assert config.max_new_tokens is not None
    stops = stop_ids(config, tokenizer)
    everyone = list(range(blocks.count))
    active = model.active_adapter if isinstance(model, PeftModel) else None
    try:
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + batch_size]
            rows = [i for _ in everyone for i in batch]
            began = time.perf_counter()
            answered = sampler.answer(
                [prompts[i] for i in rows],
                [answers[i] for i in rows],
                config.max_new_tokens,
                min_new_tokens=config.min_new_tokens or 0,
                blocks=blocks,
            )
            seconds = time.perf_counter() - began
            texts, counts = decode_completions(tokenizer, answered.completions, stops)
            scored = [(likelihood, len(answers[i])) for likelihood, i in zip(answered.log_likelihoods, rows)]
            yield AnswerBatch(everyone, batch, Generated(texts, counts, seconds), scored)
    finally:
        if blocks.turns is not None:
            blocks.turns.restore()
        if isinstance(model, PeftModel) and isinstance(active, str):
            model.set_adapter(active)


def mixed_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: GenerationConfig,
    adapters: list[str],
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    order: list[int],
    batch_size: int,
) -> Iterator[AnswerBatch]:
    """Batch by batch of rows, every combination in the same ``generate`` call (PEFT's mixed-adapter batches)."""
    mixed = isinstance(model, PeftModel)
    everyone = list(range(len(adapters)))
    for start in range(0, len(order), max(1, batch_size)):
        batch = order[start : start + batch_size]
        batch_prompts = [prompts[i] for _ in adapters for i in batch]
        batch_answers = [answers[i] for _ in adapters for i in batch]
        names = [name for name in adapters for _ in batch] if mixed else None
        generated = generate_batch(model, tokenizer, batch_prompts, config, names)
        scored = answer_log_likelihood(model, batch_prompts, batch_answers, tokenizer.pad_token_id, names)
        yield AnswerBatch(everyone, batch, generated, scored)


@contextlib.contextmanager
def only_adapter(model: PreTrainedModel, name: str, turns: AdapterTurns | None = None) -> Iterator[None]:
    """The model with adapter ``name`` alone active (``BASE_ADAPTER``: with its adapters disabled), in the slot of
    ``turns`` when it has ``name``'s weights."""
    if not isinstance(model, PeftModel):
        yield
    elif name == BASE_ADAPTER:
        with model.disable_adapter():
            yield
    elif turns is not None and name in turns.weights:
        turns.take(name)
        yield
    else:
        model.set_adapter(name)
        yield
