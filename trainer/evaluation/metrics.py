"""Scores of generated answers against references, per row and over a whole combination.

The metrics come from the libraries people compare against: ROUGE from ``rouge-score`` (Google's
reference implementation), BLEU from ``sacrebleu`` (the reproducible one papers cite), accuracy and
macro-F1 from scikit-learn. Token F1 is SQuAD's definition (normalise, then bag-of-words overlap);
it has no maintained standalone package, and its official script is these few lines.

Classification metrics appear only when the references form a small label set (like intent names):
there, "which label did it pick" is the question, and ROUGE on one-word answers says little.
``accuracy`` reads each answer as a label (its first line, case and a final full stop ignored), while
``exact_match`` compares the whole answer as written: "Refund.\nThanks" is accurate but no exact match.

``batch_latency_s`` and ``batch_tokens_per_s`` are those of the batches a combination's rows were generated in: its
own where the combinations of a base model answer in turn (the graphed path of ``trainer.evaluation.answer_batches``),
shared and equal for all of them where they answer in the same mixed-adapter batches; ``mean_new_tokens`` is always
the combination's own.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, tokenize, tokenizers

ROW_METRICS = ("exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "bleu")
MAX_LABELS = 64  # more distinct references than this is free text, not a label set
MAX_LABEL_CHARS = 48

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


class _StemmedOnce(tokenizers.Tokenizer):
    """rouge-score's own tokenisation and Porter stemmer (``use_stemmer=True``), each distinct word stemmed once:
    stemming was most of the time scoring long answers took (1.5 ms for 100 words)."""

    def __init__(self) -> None:
        self.stem = functools.lru_cache(maxsize=1 << 16)(PorterStemmer().stem)

    def tokenize(self, text: str) -> list[str]:
        return tokenize.tokenize(text, self)


_SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_StemmedOnce())


@dataclass(frozen=True)
class RowResult:
    output: str
    reference: str
    new_tokens: int
    latency_s: float  # wall time of the batch the row was generated in (with other combinations' rows, in mixed batches)
    log_likelihood: float | None  # sum over the reference's tokens, teacher-forced
    reference_tokens: int


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(output: str, reference: str) -> float:
    predicted, expected = normalize(output).split(), normalize(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def score_row(output: str, reference: str) -> dict[str, float]:
    return dict(_scores(output, reference))


@functools.lru_cache(maxsize=1 << 16)  # ``aggregate`` scores the rows again that answering has just scored
def _scores(output: str, reference: str) -> dict[str, float]:
    rouge = _SCORER.score(reference, output)
    return {
        "exact_match": float(output.strip() == reference.strip()),
        "token_f1": token_f1(output, reference),
        "rouge1": rouge["rouge1"].fmeasure,
        "rouge2": rouge["rouge2"].fmeasure,
        "rougeL": rouge["rougeL"].fmeasure,
        "bleu": sacrebleu.sentence_bleu(output, [reference]).score,
    }


def as_label(text: str) -> str:
    """An answer read as a class label: its first line, case and surrounding spaces or full stop ignored."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(first.casefold().split()).rstrip(".")


def label_set(references: Sequence[str]) -> list[str] | None:
    """The distinct references when they look like class labels (few, short, repeated), else None."""
    labels = sorted({as_label(r) for r in references})
    if not 2 <= len(labels) <= min(MAX_LABELS, len(references) // 2):
        return None
    if any(len(label) > MAX_LABEL_CHARS or not label for label in labels):
        return None
    return labels


def aggregate(
    rows: Sequence[RowResult], generation_seconds: float, labels: list[str] | None, batch_tokens: int | None = None
) -> dict[str, float]:
    """One number per metric for a combination; ``labels`` from ``label_set`` over every row's reference;
    ``generation_seconds`` and ``batch_tokens``: the time and the tokens of the batches the rows were generated in,
    every combination's (None: these rows' tokens alone, when they had the batches to themselves)."""
    if not rows:
        return {}
    scores = [score_row(r.output, r.reference) for r in rows]
    result = {name: sum(s[name] for s in scores) / len(scores) for name in ROW_METRICS}
    result["bleu"] = sacrebleu.corpus_bleu([r.output for r in rows], [[r.reference for r in rows]]).score
    scored = [r for r in rows if r.log_likelihood is not None and r.reference_tokens]
    if scored:
        total_tokens = sum(r.reference_tokens for r in scored)
        mean = sum(r.log_likelihood or 0.0 for r in scored) / total_tokens
        result["mean_log_likelihood"] = mean
        result["perplexity"] = math.exp(-mean) if -mean < 700 else math.inf
    if labels:
        from sklearn.metrics import accuracy_score, f1_score  # scipy and all: only for label sets

        # Anything outside the label set is simply wrong.
        predicted = [as_label(r.output) for r in rows]
        expected = [as_label(r.reference) for r in rows]
        result["accuracy"] = float(accuracy_score(expected, predicted))
        result["macro_f1"] = float(f1_score(expected, predicted, labels=labels, average="macro", zero_division=0))
    result["batch_latency_s"] = sum(r.latency_s for r in rows) / len(rows)
    tokens = sum(r.new_tokens for r in rows)
    result["new_tokens"] = float(tokens)
    result["mean_new_tokens"] = tokens / len(rows)
    shared = tokens if batch_tokens is None else batch_tokens
    result["batch_tokens_per_s"] = shared / generation_seconds if generation_seconds > 0 else 0.0
    return {key: value for key, value in result.items() if math.isfinite(value)}
