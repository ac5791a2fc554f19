"""lm-evaluation-harness's model interface over one loaded base model and every adapter on it.

lm-eval scores one ``LM`` at a time: it builds every request of its tasks, asks the model for all
log-likelihoods (multiple choice), rolling log-likelihoods (perplexity) and generations in three calls,
then scores the answers itself. Each combination of a base model gets its own ``AdapterLM``, and all of
them share one ``SharedAnswers``: the first combination that asks a list of requests has it answered by
every adapter at once, in mixed-adapter batches laid out adapter-major (``trainer.inference.generation``:
one forward pass per batch for all adapters), and the others, asking the same requests (same tasks, same
seeds), take their answers from it. So the base loads once and each batch runs once for all adapters.

Text is tokenized as the model's tokenizer does by default (a BOS token where the model expects one, as ftapp's
training and evaluation tokenize): lm-eval's ``hf`` model with ``add_bos_token=True``. The test compares against that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.inference.generation import continuation_scores, encode_prompt, generate_batch, generation_config

# Sampling settings lm-eval tasks may give in generation_kwargs that transformers' GenerationConfig takes as they are.
_SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k")
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default for a task that names none


class SharedAnswers:
    """Answers every adapter of one loaded model gives to one list of lm-eval requests, computed once.

    ``adapters``: the name each combination's rows carry (``BASE_ADAPTER`` for the base alone), one per
    combination (a name twice: the same combination twice, answered once); ``on_answers(count)`` hears of each
    answered batch (count = requests x distinct adapters), and ``on_requests(count)`` of each new list, for progress."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        adapters: Sequence[str],
        batch_size: int,
        on_requests: Callable[[int], None] = lambda count: None,
        on_answers: Callable[[int], None] = lambda count: None,
    ):
        self.model, self.tokenizer, self.adapters = model, tokenizer, list(dict.fromkeys(adapters))
        self.consumers = len(adapters)
        self.batch_size = max(1, batch_size)
        self.on_requests, self.on_answers = on_requests, on_answers
        self.mixed = isinstance(model, PeftModel)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self._pending: dict[tuple[str, str], tuple[dict[str, list[Any]], list[int]]] = {}

    def answer(self, kind: str, args: list[tuple[Any, ...]], adapter: str) -> list[Any]:
        key = (kind, hashlib.sha256(repr(args).encode()).hexdigest())
        if key not in self._pending:
            self.on_requests(len(args) * len(self.adapters))
            compute = {"loglikelihood": self._loglikelihood, "loglikelihood_rolling": self._rolling, "generate_until": self._generate}[kind]
            self._pending[key] = (compute(args), [self.consumers])
        answers, waiting = self._pending[key]
        waiting[0] -= 1
        if waiting[0] <= 0:
            del self._pending[key]  # every combination has its answers: nothing to keep
        return answers[adapter]

    # -- log-likelihoods ------------------------------------------------------------------------------
    def _loglikelihood(self, args: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
        pairs = [self._encode_pair(context, continuation) for context, continuation in args]
        return self._score(pairs)

    def _rolling(self, args: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
        """A whole text's log-likelihood, in disjoint windows of the model's length, as lm-eval's own models do."""
        windows: list[tuple[list[int], list[int]]] = []
        owners: list[int] = []
        prefix = self._prefix_token()
        for number, (text,) in enumerate(args):
            tokens = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            for window in get_rolling_token_windows(tokens, prefix, self.max_length, 1):
                windows.append(make_disjoint_window(window))
                owners.append(number)
        scored = self._score(windows)
        totals: dict[str, list[Any]] = {}
        for adapter, values in scored.items():
            sums = [0.0] * len(args)
            for owner, (logp, _greedy) in zip(owners, values):
                sums[owner] += logp
            totals[adapter] = sums
        return totals

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> dict[str, list[Any]]:
        """(log p, greedy) of each (context, continuation) for every adapter; longest first, as batches go."""
        results: dict[str, list[Any]] = {adapter: [None] * len(pairs) for adapter in self.adapters}
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            contexts = [pairs[i][0] for _ in self.adapters for i in batch]
            continuations = [pairs[i][1] for _ in self.adapters for i in batch]
            scores = continuation_scores(self.model, contexts, continuations, self.tokenizer.pad_token_id, self._names(len(batch)))
            for k, (adapter, i) in enumerate((adapter, i) for adapter in self.adapters for i in batch):
                results[adapter][i] = scores[k]
            self.on_answers(len(batch) * len(self.adapters))
        return results

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces of the context belong to the continuation; the continuation's tokens are
        those the whole text adds to the context's, so a word split across the seam is scored as the model reads it."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        context_ids = list(self.tokenizer(context)["input_ids"]) if context else []
        whole = list(self.tokenizer(context + continuation)["input_ids"])
        if whole[: len(context_ids)] == context_ids:
            continuation_ids = whole[len(context_ids) :]
        else:
            continuation_ids = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if not context_ids:
            context_ids = [self._prefix_token()]
        room = self.max_length - len(continuation_ids)
        return (context_ids[-room:] if room > 0 else context_ids[-1:]), continuation_ids[-(self.max_length - 1) :]

    def _prefix_token(self) -> int:
        token = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        return int(token)

    # -- generations ----------------------------------------------------------------------------------
    def _generate(self, args: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
        """Requests grouped by their generation settings (a task's); each group in batches for every adapter."""
        results: dict[str, list[Any]] = {adapter: [None] * len(args) for adapter in self.adapters}
        groups: dict[str, list[int]] = {}
        for i, (_context, settings) in enumerate(args):
            groups.setdefault(repr(sorted((settings or {}).items())), []).append(i)
        for indices in groups.values():
            # lm-eval's reading of a task's generation_kwargs (max_gen_toks and its aliases, greedy unless do_sample)
            settings = normalize_gen_kwargs(dict(args[indices[0]][1] or {}), DEFAULT_MAX_GEN_TOKS)
            until = settings.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(settings["max_gen_toks"])
            config = generation_config(
                self.model, self.tokenizer, {"max_new_tokens": max_new, **{k: settings[k] for k in _SAMPLING_KEYS if k in settings}}
            )
            config.stop_strings = until or None
            room = max(1, self.max_length - max_new)
            prompts = {i: encode_prompt(self.tokenizer, args[i][0])[-room:] for i in indices}
            order = sorted(indices, key=lambda i: -len(prompts[i]))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                generated = generate_batch(
                    self.model, self.tokenizer, [prompts[i] for _ in self.adapters for i in batch], config, self._names(len(batch))
                )
                for k, (adapter, i) in enumerate((adapter, i) for adapter in self.adapters for i in batch):
                    results[adapter][i] = cut_at_stop(generated.texts[k], until)
                self.on_answers(len(batch) * len(self.adapters))
        return results

    def _names(self, rows_per_adapter: int) -> list[str] | None:
        return [adapter for adapter in self.adapters for _ in range(rows_per_adapter)] if self.mixed else None


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """The text before the first stop string: generation stops after the token that completes one, which may carry more."""
    cut = min((text.find(stop) for stop in until if stop and stop in text), default=-1)
    return text[:cut] if cut >= 0 else text


class AdapterLM(LM):
    """One combination as lm-eval sees it: a model whose answers come from ``SharedAnswers`` under ``adapter``."""

    def __init__(self, shared: SharedAnswers, adapter: str):
        super().__init__()
        self.shared, self.adapter = shared, adapter

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.shared.answer("loglikelihood", [request.args for request in requests], self.adapter)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return self.shared.answer("loglikelihood_rolling", [request.args for request in requests], self.adapter)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return self.shared.answer("generate_until", [request.args for request in requests], self.adapter)
