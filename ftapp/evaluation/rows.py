"""Which dataset rows an evaluation scores.

By default the rows the adapters never trained on: each adapter made by a run of this dataset has
the run's ``split.json`` (the held-out row positions); with several such adapters, only rows held
out from all of them are fair to every column. Without any, a seeded ``dataset_fraction`` sample.
``max_rows`` then takes a seeded sample of those, for a quick look.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ftapp import rules
from ftapp.errors import Problem
from ftapp.evaluation.request import EvaluationRequest
from storage import DatasetRecord, Transaction
from trainer.protocol import SPLIT_FILE


@dataclass(frozen=True)
class RowChoice:
    indices: tuple[int, ...]
    described: str


@dataclass(frozen=True)
class HeldOut:
    adapter_name: str
    run_id: str
    indices: frozenset[int]


def held_out_splits(tx: Transaction, request: EvaluationRequest, dataset: DatasetRecord) -> list[HeldOut]:
    """The validation splits of the runs that trained the request's adapters on this same dataset."""
    found = []
    for combo in request.combinations:
        adapter = tx.adapters.get(combo.adapter_id) if combo.adapter_id else None
        run = tx.runs.get(adapter.run_id) if adapter and adapter.run_id else None
        if adapter is None or run is None:
            continue
        path = Path(run.run_dir or "") / SPLIT_FILE
        if not path.is_file():
            continue
        split = json.loads(path.read_text(encoding="utf-8"))
        source = split.get("source") or {}
        same = (source.get("path") and source.get("path") == dataset.location) or (
            source.get("hub_name")
            and source.get("hub_name") == dataset.huggingface_name
            and source.get("hub_split") == (dataset.hf_split or "train")
        )
        if same:
            found.append(HeldOut(adapter.name, run.id, frozenset(split.get("validation_indices") or [])))
    return found


def choose_rows(tx: Transaction, request: EvaluationRequest, dataset: DatasetRecord) -> tuple[RowChoice | None, list[Problem]]:
    splits = held_out_splits(tx, request, dataset)
    if splits:
        common = frozenset.intersection(*(s.indices for s in splits))
        if not common:
            names = ", ".join(s.adapter_name for s in splits)
            return None, [
                Problem(
                    rules.EVAL_ROWS_LEFT,
                    f"the held-out rows of {names} do not overlap: every row trained one of them; evaluate them separately",
                    "rows",
                )
            ]
        indices = sorted(common)
        runs = ", ".join(dict.fromkeys(s.run_id[:8] for s in splits))
        described = f"held-out split of run {runs} ({len(indices)} rows)"
    else:
        if not dataset.num_rows:
            return None, [
                Problem(
                    rules.EVAL_ROWS_LEFT,
                    f"dataset '{dataset.name}' has no known row count; open it in Datasets once so it is counted",
                    "rows",
                )
            ]
        count = max(1, math.floor(dataset.num_rows * request.dataset_fraction + 1e-9))
        indices = sorted(random.Random(request.seed).sample(range(dataset.num_rows), count))
        described = (
            f"{request.dataset_fraction:.0%} of {dataset.num_rows} rows (seed {request.seed}); no adapter was trained on this dataset"
        )
    if request.max_rows and len(indices) > request.max_rows:
        indices = sorted(random.Random(request.seed).sample(indices, request.max_rows))
        described += f", {request.max_rows} sampled"
    return RowChoice(tuple(indices), described), []
