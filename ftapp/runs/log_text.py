"""A run's log as a person reads it: the trainer's progress lines (``PROGRESS_PREFIX`` + JSON, written for programs)
as one short line each, every other line as written. The Runs tab and ``ftapp runs logs`` show the same text.

A failed run's stored error text is the supervisor's summary and suggestion, then the log's tail after
``LOG_TAIL_MARKER``: pages that show why a run failed show the part before it (``failure_summary``)."""

from __future__ import annotations

import json

from trainer.protocol import PROGRESS_PREFIX

LOG_TAIL_MARKER = "\n--- log tail ---\n"


def failure_text(summary: str, suggestion: str, tail: str) -> str:
    """What the supervisor stores as a failed run's error text."""
    return f"{summary}\nSuggestion: {suggestion}{LOG_TAIL_MARKER}{tail}"


def failure_summary(error_text: str | None) -> str:
    """A failed run's error text without the log tail the supervisor appended (all of it when there is none)."""
    return (error_text or "").partition(LOG_TAIL_MARKER)[0].strip()


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or seconds != seconds:  # NaN is what a broken estimate looks like
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def progress_line(fields: dict) -> str:
    """A progress event as a person reads it: ``step 20/100 · loss 1.234 · lr 0.0002 · 3,100 tokens/s · ETA 12 s``."""
    step, total = fields.get("step"), fields.get("total_steps")
    parts = [f"step {step}/{total}" if total else f"step {step}"] if step is not None else []
    shown = {
        "epoch": lambda v: f"epoch {v:.2f}",
        "loss": lambda v: f"loss {v:.4g}",
        "lr": lambda v: f"lr {v:.3g}",
        "grad_norm": lambda v: f"grad norm {v:.3g}",
        "tokens_per_s": lambda v: f"{v:,.0f} tokens/s",
        "seconds": lambda v: f"{v:.1f} s",
        "eta_s": lambda v: f"ETA {duration(v)}",
    }
    for key, show in shown.items():
        value = fields.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(show(value))
    # Anything else a verb reports (an evaluation's counts); ``metrics`` (DPO/GRPO) are the Runs tab's charts.
    skipped = {"step", "total_steps", "metrics", *shown}
    parts += [f"{key} {value}" for key, value in fields.items() if key not in skipped and isinstance(value, (str, int, float))]
    return " · ".join(parts)


def readable_log(text: str) -> str:
    lines = []
    for line in text.splitlines():
        fields = _progress_fields(line)
        lines.append(line if fields is None else progress_line(fields))
    return "\n".join(lines)


def _progress_fields(line: str) -> dict | None:
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        fields = json.loads(line[len(PROGRESS_PREFIX) :])
    except (ValueError, RecursionError):  # a line cut short, or not ours: shown as written
        return None
    return fields if isinstance(fields, dict) else None
