"""Held-out preference pairs scored the way DPO measures them: by likelihood, nothing generated.

Every combination scores the chosen and the rejected answer of each pair: log p(answer | prompt),
the sum over the answer's tokens, teacher-forced (DPO's log-probabilities are sums). Per combination:

* ``preference_accuracy``: the share of pairs with log p(chosen) > log p(rejected);
* ``mean_margin``: the mean of log p(chosen) - log p(rejected);
* ``mean_logp_chosen`` / ``mean_logp_rejected``: DPO often lowers both; what it widens is the margin.

Against #1 as the reference policy (the base model, or the adapter a DPO run started from), for the
combinations sharing #1's base model — TRL's ``rewards/accuracies`` and ``rewards/margins``:

* ``reward_accuracy``: the share of pairs whose implicit reward β·[(log p_c - ref_c) - (log p_r - ref_r)] > 0;
* ``reward_margin``: that reward's mean, with β of the adapter's DPO run (``reward_beta``; 1 when unknown).

Each sample row carries the pair as ``reference`` (chosen, ``REJECTED_DIVIDER``, rejected) and a
one-line verdict as ``output``; its ``scores`` are the metrics above for that one pair, so the mean
of the rows answered so far is the running aggregate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.data.preference_pairs import PreferenceCase, pair_ids
from trainer.inference.generation import answer_log_likelihood
from trainer.protocol import REJECTED_DIVIDER, EvalCombination, EvaluationSpec
from trainer.run_events import EventSink

# Tokens (padded rows x longest row) per forward pass: DPO answers run to thousands of tokens, and the
# float32 log-softmax over a large vocabulary for each of them is what fills memory.
TOKENS_PER_PASS = 8192


@dataclass(frozen=True)
class PairScore:
    logp_chosen: float
    logp_rejected: float
    chosen_tokens: int

    @property
    def margin(self) -> float:
        return self.logp_chosen - self.logp_rejected


def score_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    combos: list[EvalCombination],
    names: list[str],
    cases: list[PreferenceCase],
    spec: EvaluationSpec,
    events: EventSink,
    progress: Any,
    results_file: Any,
    reference: EvalCombination | None,
) -> dict[int, list[dict[str, float]]]:
    """Every pair with every combination of one base model; per position, each pair's scores (``pair_scores``)."""
    encoded = [pair_ids(tokenizer, case) for case in cases]
    order = sorted(range(len(cases)), key=lambda i: -len(encoded[i][0]) - max(len(encoded[i][1]), len(encoded[i][2])))
    mixed = isinstance(model, PeftModel)
    scores: dict[int, list[dict[str, float]]] = {combo.position: [] for combo in combos}
    for start in range(0, len(order), max(1, spec.batch_size)):
        batch = order[start : start + spec.batch_size]
        began = time.perf_counter()
        pairs: dict[tuple[int, int], PairScore] = {}
        for chunk in _passes(batch, encoded, len(combos)):
            # Adapter-major blocks, each chunk's chosen answers then its rejected ones: one pass for both.
            prompts = [encoded[i][0] for _ in combos for _ in range(2) for i in chunk]
            answers = [encoded[i][1 + side] for _ in combos for side in range(2) for i in chunk]
            adapters = [name for name in names for _ in range(2 * len(chunk))] if mixed else None
            scored = answer_log_likelihood(model, prompts, answers, tokenizer.pad_token_id, adapters)
            for k, combo in enumerate(combos):
                block = scored[2 * k * len(chunk) : 2 * (k + 1) * len(chunk)]
                for j, i in enumerate(chunk):
                    pairs[combo.position, i] = PairScore(block[j][0], block[len(chunk) + j][0], block[j][1])
        seconds = time.perf_counter() - began
        rows = []
        for combo in combos:
            for i in batch:
                pair = pairs[combo.position, i]
                base = pairs.get((reference.position, i)) if reference and combo.position != reference.position else None
                values = pair_scores(pair, base, combo.dpo_beta)
                scores[combo.position].append(values)
                case = cases[i]
                row = {
                    "position": combo.position,
                    "row_index": case.row_index,
                    "input": case.input,
                    "reference": case.chosen + REJECTED_DIVIDER + case.rejected,
                    "output": verdict(values),
                    "scores": values,
                    "chosen": case.chosen,
                    "rejected": case.rejected,
                    "new_tokens": 0,
                    "latency_s": seconds,
                    "log_likelihood": pair.logp_chosen,
                    "reference_tokens": pair.chosen_tokens,
                    "logp_rejected": pair.logp_rejected,
                }
                rows.append(row)
                results_file.write(json.dumps(row) + "\n")
        progress.report(events, results_file, rows)
    return scores


def pair_scores(pair: PairScore, reference: PairScore | None, beta: float | None) -> dict[str, float]:
    """One pair's metrics; their means over the pairs are the combination's aggregates."""
    values = {
        "preference_accuracy": float(pair.logp_chosen > pair.logp_rejected),
        "mean_margin": pair.margin,
        "mean_logp_chosen": pair.logp_chosen,
        "mean_logp_rejected": pair.logp_rejected,
    }
    if reference is not None:
        scale = 1.0 if beta is None else beta
        reward = scale * (pair.margin - reference.margin)
        values.update(reward_accuracy=float(reward > 0), reward_margin=reward, reward_beta=scale)
    return values


def preference_aggregates(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {name: sum(row[name] for row in rows) / len(rows) for name in rows[0]}


def verdict(values: dict[str, float]) -> str:
    """What a person reads in the combination's cell of the side-by-side view."""
    side = "chosen" if values["preference_accuracy"] else "rejected"
    lines = [
        f"prefers {side} · margin {values['mean_margin']:+.3f}",
        f"log p chosen {values['mean_logp_chosen']:.2f}, rejected {values['mean_logp_rejected']:.2f}",
    ]
    if "reward_margin" in values:
        lines.append(f"reward margin vs #1 {values['reward_margin']:+.3f} (β {values['reward_beta']:g})")
    return "\n".join(lines)


def _passes(batch: list[int], encoded: list[tuple[list[int], list[int], list[int]]], combos: int) -> list[list[int]]:
    """The batch's rows in chunks of at most ``TOKENS_PER_PASS`` padded tokens (at least one row each)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in batch:
        length = len(encoded[i][0]) + max(len(encoded[i][1]), len(encoded[i][2]))
        if current and 2 * combos * (len(current) + 1) * max(longest, length) > TOKENS_PER_PASS:
            chunks.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    return [*chunks, current] if current else chunks
