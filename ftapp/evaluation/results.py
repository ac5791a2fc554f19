"""An evaluation as people read it: one row per dataset row with every combination's answer, and
one line per combination with its metrics and their deltas against the baseline (position 1).

While the run is live, combinations without final aggregates show the running mean of their
per-row scores (``final`` False), so the table fills in as answers arrive.

An LLM judge's verdicts come per row; ``win_rate``, ``tie_rate`` and ``loss_rate`` count them together with the
Compare tab's blind A/B votes between the same two combinations (same base model, same adapters), so a person's
vote and the judge's land in one rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ftapp.runs.specs import UnreadableSpecError, run_spec
from storage import (
    ComparisonVoteRecord,
    EvaluationAnswerRecord,
    EvaluationCombinationRecord,
    EvaluationScoreRecord,
    EvaluationVerdictRecord,
    RunRecord,
)
from trainer.protocol import BENCHMARK_PREFIX, LOSS, REJECTED_DIVIDER, TIE, WIN, EvaluationSpec

# Metrics where a smaller number is better; deltas of these are good when negative.
LOWER_IS_BETTER = frozenset({"perplexity", "latency_s", "batch_latency_s", "judge_loss_rate", "loss_rate"})
# lm-eval's metrics that are better lower (its tasks say so in higher_is_better; these are the ones its tasks use).
LOWER_IS_BETTER_BENCHMARK = frozenset({"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter"})
TIE_VOTE = "tie"  # the Compare tab's vote for neither answer
BATCH_NOTE = (
    "Where the combinations of a base model answer in turn (on a CUDA GPU, each adapter folded into the weights in "
    "its turn) this is the combination's own cost; where they answer in the same batches (mixed-adapter batches on "
    "the CPU, or with beams, penalties or stop strings; all adapters in one decode step when there are few rows) it "
    "is the shared batch's cost, equal for those combinations."
)
# What the metrics of preference pairs (DPO) and rewards (GRPO) mean, for the table's readers.
METRIC_HELP = {
    "preference_accuracy": "Share of pairs whose chosen answer is likelier than the rejected one (log p summed over the answer's tokens).",
    "mean_margin": "Mean of log p(chosen) - log p(rejected), in nats.",
    "mean_logp_chosen": "Mean log p(chosen answer | prompt), summed over its tokens. DPO often lowers it; what it widens is the margin.",
    "mean_logp_rejected": "Mean log p(rejected answer | prompt), summed over its tokens.",
    "reward_accuracy": "DPO's reward accuracy on held-out pairs: the share whose implicit reward "
    "β·[(log p_c - ref_c) - (log p_r - ref_r)] is positive, with #1 as the reference policy (β leaves the sign alone).",
    "reward_margin": "Mean implicit DPO reward margin against #1, scaled by reward_beta.",
    "reward_beta": "The β of reward_margin: the beta of the DPO run that trained the adapter, or 1 when no DPO run of this app trained it.",
    "reward": "Mean reward of the generated answers: the weighted sum of the evaluation's rewards (GRPO's reward).",
    "reward_std": "Standard deviation of the reward over the answers.",
    "exact_match": "Share of answers equal to the reference as written (spaces around them ignored): case, extra lines and a "
    "final full stop count. accuracy is more lenient, so it can be higher.",
    "accuracy": "Share of answers whose first line names the reference's label, case-insensitively and ignoring a final full "
    "stop (only when the references form a small label set). exact_match compares the whole answer as written, "
    "so it can be lower.",
    "macro_f1": "F1 per label (the first line of each answer, read as accuracy reads it), averaged over the labels.",
    "batch_latency_s": "Mean wall time of the batches the rows were generated in. " + BATCH_NOTE,
    "batch_tokens_per_s": "Tokens generated per second by the whole batch, every combination's answers together. " + BATCH_NOTE,
    "latency_s": "Older runs: the wall time of the shared batch a row was generated in, equal for every combination of a base "
    "model (newer runs call it batch_latency_s).",
    "tokens_per_s": "Older runs: this combination's tokens per second of the shared batches' time (newer runs report the "
    "batch's throughput as batch_tokens_per_s).",
    "new_tokens": "Tokens this combination generated over all rows, its stop tokens included: its own share of the cost.",
    "mean_new_tokens": "Tokens this combination generated per answer: its own share of the cost, unlike the batch_ numbers.",
    "judge_win_rate": "Share of rows where the LLM judge preferred this combination's answer to #1's, over both orders "
    "(shown as B, then as A); rows with no verdict in either order are left out.",
    "judge_tie_rate": "Share of rows the LLM judge called even: a tie in both orders, or opposite verdicts when the answers "
    "swap places (position bias).",
    "judge_loss_rate": "Share of rows where the LLM judge preferred #1's answer.",
    "judged_rows": "Rows the LLM judge gave a verdict on, in at least one order.",
    "win_rate": "Share of comparisons with #1 this combination won: the LLM judge's rows plus the Compare tab's blind A/B "
    "votes between the same two.",
    "tie_rate": "Share of comparisons with #1 that were even: judge rows plus blind votes.",
    "loss_rate": "Share of comparisons with #1 this combination lost: judge rows plus blind votes.",
    "ab_votes": "Blind A/B votes of the Compare tab between this combination and #1 (same base model and adapters), counted "
    "in win_rate, tie_rate and loss_rate.",
}


def is_lower_better(name: str) -> bool:
    if name.startswith(BENCHMARK_PREFIX):
        return name.split("/")[2] in LOWER_IS_BETTER_BENCHMARK if name.count("/") >= 2 else False
    return name in LOWER_IS_BETTER


def metric_help(name: str) -> str | None:
    if name in METRIC_HELP:
        return METRIC_HELP[name]
    if name.startswith(BENCHMARK_PREFIX) and name.count("/") >= 2:
        _, task, metric = name.split("/", 2)
        metric, _, filtered = metric.partition("/")
        how = f", after its '{filtered}' answer filter" if filtered else ""
        better = "lower" if metric in LOWER_IS_BETTER_BENCHMARK else "higher"
        return (
            f"lm-evaluation-harness task {task}: {metric}{how}, scored by lm-eval itself (its prompts, few-shot examples "
            f"and metric), so it compares with published numbers of the same task version and settings; {better} is better."
        )
    if name.startswith("reward/"):
        reward = name.removeprefix("reward/")
        if reward.endswith("/std"):
            return f"Standard deviation of the {reward.removesuffix('/std')} reward over the answers."
        return f"Mean {reward} reward of the generated answers (unweighted)."
    return None


@dataclass(frozen=True)
class CombinationResult:
    position: int
    label: str
    model_id: str | None
    adapter_id: str | None
    metrics: dict[str, float]
    deltas: dict[str, float]
    final: bool  # False: running means of the rows answered so far


@dataclass(frozen=True)
class AnswerRow:
    row_index: int
    input: str
    reference: str
    outputs: dict[int, str]  # position -> answer
    scores: dict[int, dict[str, float]] = field(default_factory=dict)
    verdicts: dict[int, EvaluationVerdictRecord] = field(default_factory=dict)  # position -> the judge's verdicts against #1

    @property
    def pair(self) -> tuple[str, str] | None:
        """A preference row's (chosen, rejected) answers; None for a row with one reference answer."""
        chosen, divider, rejected = self.reference.partition(REJECTED_DIVIDER)
        return (chosen, rejected) if divider else None


@dataclass(frozen=True)
class EvaluationResults:
    run: RunRecord
    rows_from: str
    combinations: list[CombinationResult]
    rows: list[AnswerRow]  # ascending row_index
    answers: int  # answers stored so far (rows × combinations when complete)
    expected: int

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for combo in self.combinations:
            names.update(dict.fromkeys(combo.metrics))
        return list(names)


def build_results(
    run: RunRecord,
    combinations: list[EvaluationCombinationRecord],
    answers: list[EvaluationAnswerRecord],
    scores: list[EvaluationScoreRecord],
    verdicts: list[EvaluationVerdictRecord] | None = None,
    votes: list[ComparisonVoteRecord] | None = None,
) -> EvaluationResults:
    try:
        spec: EvaluationSpec | None = run_spec(run, EvaluationSpec)
    except UnreadableSpecError:  # an imported row of another version: its stored answers still show
        spec = None
    final: dict[int, dict[str, float]] = {}
    for score in scores:
        final.setdefault(score.position, {})[score.metric] = score.value
    running: dict[int, dict[str, list[float]]] = {}
    rows: dict[int, AnswerRow] = {}
    for answer in answers:
        row = rows.setdefault(answer.row_index, AnswerRow(answer.row_index, answer.input, answer.reference, {}, {}))
        row.outputs[answer.position] = answer.output
        row.scores[answer.position] = answer.score_values
        for name, value in answer.score_values.items():
            running.setdefault(answer.position, {}).setdefault(name, []).append(value)
    for verdict in verdicts or []:
        if verdict.row_index in rows:
            rows[verdict.row_index].verdicts[verdict.position] = verdict
    metrics = {
        c.position: final.get(c.position) or {k: sum(v) / len(v) for k, v in running.get(c.position, {}).items()} for c in combinations
    }
    for position, rates in win_rates(combinations, verdicts or [], votes or []).items():
        metrics[position] = {**metrics[position], **rates}
    baseline = metrics.get(1, {})
    results = [
        CombinationResult(
            c.position,
            c.label,
            c.model_id,
            c.adapter_id,
            metrics[c.position],
            {k: v - baseline[k] for k, v in metrics[c.position].items() if k in baseline} if c.position != 1 else {},
            c.position in final,
        )
        for c in sorted(combinations, key=lambda c: c.position)
    ]
    expected = len(spec.row_indices) * len(combinations) if spec else len(answers)
    return EvaluationResults(run, spec.rows_from if spec else "", results, [rows[i] for i in sorted(rows)], len(answers), expected)


def win_rates(
    combinations: list[EvaluationCombinationRecord], verdicts: list[EvaluationVerdictRecord], votes: list[ComparisonVoteRecord]
) -> dict[int, dict[str, float]]:
    """win_rate, tie_rate, loss_rate and ab_votes of each combination against #1: its judged rows and its blind votes."""
    baseline = next((c for c in combinations if c.position == 1), None)
    if baseline is None:
        return {}
    tallies: dict[int, dict[str, int]] = {}
    for verdict in verdicts:
        if verdict.outcome in (WIN, TIE, LOSS):
            tallies.setdefault(verdict.position, {WIN: 0, TIE: 0, LOSS: 0, "votes": 0})[verdict.outcome] += 1
    for combo in combinations:
        if combo.position == 1 or combo.model_id is None or combo.model_id != baseline.model_id or combo.adapter_id == baseline.adapter_id:
            continue  # votes compare adapters of one base model; the same combination twice has nothing to win
        for vote in votes:
            result = vote_outcome(vote, combo, baseline)
            if result:
                tally = tallies.setdefault(combo.position, {WIN: 0, TIE: 0, LOSS: 0, "votes": 0})
                tally[result] += 1
                tally["votes"] += 1
    rates = {}
    for position, tally in tallies.items():
        total = tally[WIN] + tally[TIE] + tally[LOSS]
        if total:
            rates[position] = {
                "win_rate": tally[WIN] / total,
                "tie_rate": tally[TIE] / total,
                "loss_rate": tally[LOSS] / total,
                "ab_votes": float(tally["votes"]),
            }
    return rates


def vote_outcome(vote: ComparisonVoteRecord, combo: EvaluationCombinationRecord, baseline: EvaluationCombinationRecord) -> str:
    """A blind vote between ``combo`` and ``baseline`` as ``combo``'s win, tie or loss; "" when it compared other outputs."""
    if not vote.blind or vote.model_id != combo.model_id:
        return ""
    try:
        candidates = json.loads(vote.candidates)
    except ValueError:
        return ""
    labels = {(c.get("adapter_id") or None): c.get("label") for c in candidates if isinstance(c, dict)}
    if (combo.adapter_id or None) not in labels or (baseline.adapter_id or None) not in labels:
        return ""
    if vote.winner == TIE_VOTE:
        return TIE
    if vote.winner == labels[combo.adapter_id or None]:
        return WIN
    if vote.winner == labels[baseline.adapter_id or None]:
        return LOSS
    return ""  # a third output won: it says nothing about these two
