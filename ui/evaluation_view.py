"""HTML for an evaluation: the aggregate table with deltas and the side-by-side answers.

Pure functions of ``EvaluationResults``. Every dataset string is escaped: rows are user data.
Colours say what a reader scans for: green an answer equal to the reference, red one that is not,
a bold border an answer that differs from the baseline's. Preference rows (DPO) show the pair and,
per combination, its verdict: green when it finds the chosen answer likelier than the rejected one.
An LLM judge's verdict on a combination's answer against #1's shows under it (win, tie or loss, each
order's verdict, the judge's reasons on hover).
"""

from __future__ import annotations

from html import escape

from ftapp.evaluation import LOWER_IS_BETTER, AnswerRow, EvaluationResults, is_lower_better, metric_help

LEADING = (
    "win_rate",
    "tie_rate",
    "loss_rate",
    "ab_votes",
    "judge_win_rate",
    "reward",
    "preference_accuracy",
    "reward_accuracy",
    "reward_margin",
    "mean_margin",
    "accuracy",
    "macro_f1",
    "exact_match",
    "token_f1",
    "rougeL",
    "rouge1",
    "rouge2",
    "bleu",
    "perplexity",
    "mean_log_likelihood",
    "mean_new_tokens",
    "batch_latency_s",
    "batch_tokens_per_s",
    "latency_s",
    "tokens_per_s",
)
OUTCOME_COLOURS = {"win": "#137333", "loss": "#c5221f", "tie": "#666"}
MAX_CELL_CHARS = 600
GOOD, BAD, NEUTRAL = "#e6f4ea", "#fde8e8", "transparent"
TABLE = "border-collapse:collapse;width:100%;font-size:0.9em"
SCROLL = "overflow-x:auto;max-width:100%"
CELL = "border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left"
# User text: a long unbroken word (a URL, code, an id) wraps in its cell instead of widening the table past the page.
TEXT = "white-space:pre-wrap;overflow-wrap:anywhere"


def _clip(text: str) -> str:
    return escape(text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _delta(metric: str, delta: float | None) -> str:
    if delta is None:
        return ""
    if abs(delta) < 1e-12:
        return " <span style='color:#888'>(±0)</span>"
    better = (delta < 0) if is_lower_better(metric) else (delta > 0)
    colour = "#137333" if better else "#c5221f"
    return f" <span style='color:{colour}'>({delta:+.3g})</span>"


def aggregate_html(results: EvaluationResults) -> str:
    """One row per metric, one column per combination: a few combinations fit the page side by side, where dozens of
    metrics as columns ran past its edge."""
    names = results.metric_names()
    metrics = [m for m in LEADING if m in names] + [m for m in names if m not in LEADING]
    if not metrics:
        return "<p>No answers yet.</p>"
    heads = [f"<th style='{CELL}'>metric</th>"]
    for combo in results.combinations:
        state = "" if combo.final else " <em style='color:#888'>(so far)</em>"
        baseline = " <b>baseline</b>" if combo.position == 1 else ""
        heads.append(f"<th style='{CELL}'>#{combo.position} {escape(combo.label)}{baseline}{state}</th>")
    body = []
    for m in metrics:
        cells = [f"<th style='{CELL};font-weight:normal'{_title(m)}>{escape(m)}</th>"]
        cells += [
            f"<td style='{CELL}'>{_number(c.metrics[m]) + _delta(m, c.deltas.get(m)) if m in c.metrics else ''}</td>"
            for c in results.combinations
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = (
        "<p style='font-size:0.85em;color:#666'>Deltas are against #1 (green: better). Lower is better for "
        f"{', '.join(sorted(LOWER_IS_BETTER))} and lm-eval's perplexities and bits per byte. Rows: {escape(results.rows_from)}.{_method_note(metrics)} "
        "Hover a metric's name for what it measures.</p>"
    )
    return f"<div style='{SCROLL}'><table style='{TABLE}' id='eval-aggregate-table'><tr>{''.join(heads)}</tr>{''.join(body)}</table></div>{note}"


def _title(metric: str) -> str:
    text = metric_help(metric)
    return f" title='{escape(text, quote=True)}'" if text else ""


def _method_note(metrics: list[str]) -> str:
    if "reward_beta" in metrics:
        return (
            " Preference pairs are scored by likelihood, nothing is generated; reward_accuracy and reward_margin are "
            "each adapter's implicit DPO reward with #1 as the reference policy, β = reward_beta (its DPO run's, else 1)."
        )
    if "preference_accuracy" in metrics:
        return " Preference pairs are scored by likelihood, nothing is generated."
    return ""


def _verdict(row: AnswerRow, position: int) -> object:
    """What "answers differently" compares: a preference row's verdict, else the answer's text."""
    if row.pair is not None:
        return (row.scores.get(position) or {}).get("preference_accuracy")
    return row.outputs.get(position)


def _right(row: AnswerRow, position: int) -> bool:
    scores = row.scores.get(position) or {}
    return scores.get("preference_accuracy" if row.pair is not None else "exact_match") == 1.0


def _reference_cell(row: AnswerRow) -> str:
    if row.pair is None:
        return f"<td style='{CELL};{TEXT}'>{_clip(row.reference)}</td>"
    chosen, rejected = row.pair
    return (
        f"<td style='{CELL};{TEXT}'><div style='background:{GOOD}'><b>chosen</b>\n{_clip(chosen)}</div>"
        f"<div style='background:{BAD};margin-top:4px'><b>rejected</b>\n{_clip(rejected)}</div></td>"
    )


def rows_html(results: EvaluationResults, only_disagreements: bool = False, limit: int = 200) -> str:
    """The answered rows in dataset order, one column per combination."""
    positions = [c.position for c in results.combinations]
    rows = results.rows
    if only_disagreements:
        rows = [r for r in rows if len({_verdict(r, p) for p in positions if p in r.outputs}) > 1]
    if not rows:
        return "<p>No rows to show yet.</p>" if not only_disagreements else "<p>Every combination gave the same answers.</p>"
    reference = "chosen / rejected" if rows[0].pair is not None else "reference"
    head = "".join(
        f"<th style='{CELL}'>{escape(h)}</th>"
        for h in ["row", "input", reference, *(f"#{c.position} {c.label}" for c in results.combinations)]
    )
    body = []
    for row in rows[:limit]:
        baseline = _verdict(row, 1) if 1 in row.outputs else None
        cells = [
            f"<td style='{CELL}'>{row.row_index}</td>",
            f"<td style='{CELL};{TEXT}'>{_clip(row.input)}</td>",
            _reference_cell(row),
        ]
        for position in positions:
            if position not in row.outputs:
                cells.append(f"<td style='{CELL};color:#888'>…</td>")
                continue
            output = row.outputs[position]
            colour = GOOD if _right(row, position) else BAD
            border = ";outline:2px solid #444" if position != 1 and baseline is not None and _verdict(row, position) != baseline else ""
            cells.append(f"<td style='{CELL};background:{colour};{TEXT}{border}'>{_clip(output)}{_judged(row, position)}</td>")
        body.append("<tr class='eval-row'>" + "".join(cells) + "</tr>")
    more = f"<p style='font-size:0.85em;color:#666'>Showing {min(limit, len(rows))} of {len(rows)} rows.</p>"
    return f"<div style='{SCROLL}'><table style='{TABLE}' id='eval-rows-table'><tr>{head}</tr>{''.join(body)}</table></div>{more}"


def _judged(row: AnswerRow, position: int) -> str:
    """The judge's verdict on this answer against #1's: the outcome, each order's verdict, its reasons on hover."""
    verdict = row.verdicts.get(position)
    if verdict is None:
        return ""
    reasons = (
        f"#1 as A: {verdict.verdict_ab or '?'} - {verdict.reason_ab}\n\n#{position} as A: {verdict.verdict_ba or '?'} - {verdict.reason_ba}"
    )
    colour = OUTCOME_COLOURS.get(verdict.outcome, "#888")
    return (
        f"<div class='eval-verdict' style='margin-top:4px;font-size:0.85em;color:{colour}' "
        f"title='{escape(reasons[: 2 * MAX_CELL_CHARS], quote=True)}'>judge: <b>{escape(verdict.outcome or 'no verdict')}</b> "
        f"vs #1 ({escape(verdict.verdict_ab or '?')} / {escape(verdict.verdict_ba or '?')})</div>"
    )
