"""Evaluation events to stored rows: each ``sample`` carries answers, each ``eval`` one combination's aggregates."""

from __future__ import annotations

import json
from typing import Any

from trainer.protocol import Event, finite_number

# Fields of an eval event that identify the combination rather than measure it.
_EVAL_KEYS = ("step", "position", "label")


def answer_rows(run_id: str, event: Event) -> list[dict[str, Any]]:
    rows = []
    for raw in event.data.get("rows") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("position"), int) or not isinstance(raw.get("row_index"), int):
            continue  # a malformed entry is skipped like a malformed line
        rows.append({
            "run_id": run_id, "position": raw["position"], "row_index": raw["row_index"],
            "input": str(raw.get("input") or ""), "reference": str(raw.get("reference") or ""),
            "output": str(raw.get("output") or ""), "scores": json.dumps(raw.get("scores") or {}),
            "new_tokens": int(raw.get("new_tokens") or 0), "latency_s": finite_number(raw.get("latency_s")) or 0.0,
            "log_likelihood": finite_number(raw.get("log_likelihood")), "reference_tokens": int(raw.get("reference_tokens") or 0),
        })
    return rows


def score_rows(run_id: str, event: Event) -> list[dict[str, Any]]:
    position = event.data.get("position")
    if not isinstance(position, int):
        return []
    return [{"run_id": run_id, "position": position, "metric": key, "value": value}
            for key, raw in event.data.items()
            if key not in _EVAL_KEYS and not key.startswith("delta_") and (value := finite_number(raw)) is not None]
