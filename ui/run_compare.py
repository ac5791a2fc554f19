"""Comparing runs: their loss curves on one chart and the settings in which their specs differ."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ftapp.runs import spec_dict
from ftapp.services import Services
from ui import charts
from ui.errors import shows_errors

# Always different between two runs, so listing them would bury the differences that matter.
IDENTITY_KEYS = ("run_id", "run_dir")
SETTING_COLUMN = "setting"


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested spec sections as dotted keys: ``training.learning_rate``, ``data.fraction``."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _shown(value: Any) -> str:
    # Lists and None read better as JSON than as Python reprs ("null", ["q_proj", "v_proj"]).
    return value if isinstance(value, str) else json.dumps(value)


def spec_differences(specs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per spec key whose value is not the same in every run, one column per run.

    A key missing from a run's spec (an older spec, a LoRA section beside a full fine-tune) counts as
    a difference and shows as "—".
    """
    flat = {label: flatten(spec) for label, spec in specs.items()}
    keys = sorted({key for values in flat.values() for key in values} - set(IDENTITY_KEYS))
    missing = object()
    rows = []
    for key in keys:
        values = [values.get(key, missing) for values in flat.values()]
        if len(flat) > 1 and any(value != values[0] for value in values[1:]):
            rows.append([key, *("—" if value is missing else _shown(value) for value in values)])
    return pd.DataFrame(rows, columns=[SETTING_COLUMN, *flat])


@shows_errors
def compare_runs(services: Services, run_ids: Sequence[str] | None) -> tuple[go.Figure, pd.DataFrame]:
    runs = services.runs.fine_tunes(run_ids or [])
    # Name and short id only: the status icon and date would make every legend entry and column wide.
    labels = {run.id: f"{run.name or run.kind} · {run.id[:8]}" for run in runs}
    curves = {labels[run.id]: services.runs.metrics(run.id).get("loss", []) for run in runs}
    specs = {labels[run.id]: spec_dict(run) for run in runs}
    return charts.compare_figure(curves), spec_differences(specs)
