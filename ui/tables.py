"""Records as the pandas frames the tabs' tables show."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd

# Long text makes each row screens tall; a table only needs the start of it to tell rows apart.
MAX_CELL_CHARS = 300


def cell(value: Any) -> Any:
    """A value as a table shows it: nested data as compact JSON, times to the minute."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[: MAX_CELL_CHARS - 1] + "…"
    return value


def frame(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A frame with exactly ``columns``, so an empty registry still shows its headers."""
    return pd.DataFrame([[cell(row.get(c)) for c in columns] for row in rows], columns=columns)


def clicked_id(event: gr.SelectData) -> str:
    """The id of the row a user clicked; every registry table keeps its ``id`` column last."""
    return str(event.row_value[-1])
