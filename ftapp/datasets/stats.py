"""Column statistics a user checks before training: how often a column is empty, how long its values are."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ColumnStats:
    column: str
    rows: int
    empty: int  # missing, null, "" or whitespace only, [] or {}
    mean_chars: float
    max_chars: int


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})


def column_stats(columns: list[str], rows: list[dict]) -> list[ColumnStats]:
    stats = []
    for column in columns:
        values = [row.get(column) for row in rows]
        present = [_text(v) for v in values if not _is_empty(v)]
        lengths = [len(text) for text in present]
        stats.append(
            ColumnStats(
                column, len(values), len(values) - len(present), sum(lengths) / len(lengths) if lengths else 0.0, max(lengths, default=0)
            )
        )
    return stats
