"""Evaluation events to stored rows: each ``sample`` carries answers (or an LLM judge's verdicts), each ``eval`` one
combination's aggregates."""

from __future__ import annotations

import json
from typing import Any

from ftapp.number_bounds import storable_int
from trainer.protocol import LOSS, TIE, VERDICT_A, VERDICT_B, VERDICT_TIE, WIN, Event, finite_number

# Fields of an eval event that identify the combination rather than measure it.
_EVAL_KEYS = ("step", "position", "label")


def answer_rows(run_id: str, event: Event) -> list[dict[str, Any]]:
    rows = []
    entries = event.data.get("rows")
    for raw in entries if isinstance(entries, list) else []:
        if not isinstance(raw, dict) or storable_int(raw.get("position")) is None or storable_int(raw.get("row_index")) is None:
            continue  # a malformed entry is skipped like a malformed line
        try:
            scores = json.dumps(raw.get("scores") or {})
        except (TypeError, ValueError):
            scores = "{}"
        rows.append(
            {
                "run_id": run_id,
                "position": raw["position"],
                "row_index": raw["row_index"],
                "input": str(raw.get("input") or ""),
                "reference": str(raw.get("reference") or ""),
                "output": str(raw.get("output") or ""),
                "scores": scores,
                "new_tokens": storable_int(raw.get("new_tokens")) or 0,
                "latency_s": finite_number(raw.get("latency_s")) or 0.0,
                "log_likelihood": finite_number(raw.get("log_likelihood")),
                "reference_tokens": storable_int(raw.get("reference_tokens")) or 0,
            }
        )
    return rows


def score_rows(run_id: str, event: Event) -> list[dict[str, Any]]:
    position = storable_int(event.data.get("position"))
    if position is None:
        return []
    return [
        {"run_id": run_id, "position": position, "metric": key, "value": value}
        for key, raw in event.data.items()
        if key not in _EVAL_KEYS and not key.startswith("delta_") and (value := finite_number(raw)) is not None
    ]


_OUTCOMES, _VERDICTS = (WIN, TIE, LOSS, ""), (VERDICT_A, VERDICT_B, VERDICT_TIE, "")
MAX_REASON_CHARS = 4_000


def verdict_rows(run_id: str, event: Event) -> list[dict[str, Any]]:
    """A judge's verdicts of one batch (``sample {verdicts}``); entries with unknown verdicts or outcomes are skipped."""
    rows = []
    entries = event.data.get("verdicts")
    for raw in entries if isinstance(entries, list) else []:
        if (
            not isinstance(raw, dict)
            or storable_int(raw.get("position")) is None
            or storable_int(raw.get("row_index")) is None
            or raw.get("outcome") not in _OUTCOMES
            or raw.get("verdict_ab") not in _VERDICTS
            or raw.get("verdict_ba") not in _VERDICTS
        ):
            continue
        rows.append(
            {
                "run_id": run_id,
                "position": raw["position"],
                "row_index": raw["row_index"],
                "outcome": raw["outcome"],
                "verdict_ab": raw["verdict_ab"],
                "reason_ab": str(raw.get("reason_ab") or "")[:MAX_REASON_CHARS],
                "verdict_ba": raw["verdict_ba"],
                "reason_ba": str(raw.get("reason_ba") or "")[:MAX_REASON_CHARS],
            }
        )
    return rows
