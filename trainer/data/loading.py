"""Read a run's dataset and hold out its validation rows: sample ``fraction``, split, record the split.

Rows are read the way ftapp read them when the dataset was registered (CSV cells stay strings,
JSON values stay JSON values), so row numbers and values agree between what the user previewed and
what is trained on. Local files are read into memory rather than through ``datasets.load_dataset``,
which would copy every file into the shared Arrow cache first.

The split is a pure function of the row count, ``fraction``, ``train_split`` and ``seed``, and
``<run_dir>/split.json`` records the held-out row indices (positions in the source, 0-based) so a
later evaluation scores exactly the rows the run never trained on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.table import InMemoryTable

from trainer.protocol import DataSource

FILE_KINDS = ("project_csv", "project_json", "project_jsonl", "project_parquet")
DIRECTORY_KIND = "project"
HUB_KIND = "huggingface"


@dataclass(frozen=True)
class DataSplit:
    num_rows: int  # rows in the source
    train_indices: list[int]  # source positions, in training order
    validation_indices: list[int]  # source positions, ascending

    def to_dict(self, data: DataSource) -> dict[str, Any]:
        return {
            "source": {
                "kind": data.kind,
                "path": data.path,
                "hub_name": data.hub_name,
                "hub_config": data.hub_config,
                "hub_split": data.hub_split,
            },
            "seed": data.seed,
            "fraction": data.fraction,
            "train_split": data.train_split,
            "num_rows": self.num_rows,
            "num_sampled": len(self.train_indices) + len(self.validation_indices),
            "num_train": len(self.train_indices),
            "num_validation": len(self.validation_indices),
            "validation_indices": self.validation_indices,
        }


def split_rows(num_rows: int, *, fraction: float, train_split: float, seed: int) -> DataSplit:
    """Shuffle the row positions with ``seed``, keep ``fraction`` of them, cut at ``train_split``.

    At least one row is sampled and at least one trains; the validation part may be empty (a
    ``train_split`` of 1). The epsilon keeps float products such as 0.29 * 100 = 28.999... whole.
    """
    if num_rows < 1:
        raise ValueError("the dataset has no rows")
    if not 0 < fraction <= 1:
        raise ValueError(f"data.fraction must be in (0, 1], got {fraction}")
    if not 0 < train_split <= 1:
        raise ValueError(f"data.train_split must be in (0, 1], got {train_split}")
    order = list(range(num_rows))
    random.Random(seed).shuffle(order)
    sampled = order[: max(1, math.floor(num_rows * fraction + 1e-9))]
    num_train = max(1, math.floor(len(sampled) * train_split + 1e-9))
    return DataSplit(num_rows, sampled[:num_train], sorted(sampled[num_train:]))


def write_split(split: DataSplit, data: DataSource, path: Path) -> None:
    temp = path.with_suffix(".partial")
    temp.write_text(json.dumps(split.to_dict(data), indent=1) + "\n", encoding="utf-8")
    os.replace(temp, path)


def load_rows(data: DataSource) -> datasets.Dataset:
    """Every row of the run's dataset, in source order."""
    if data.kind == HUB_KIND:
        if not data.hub_name:
            raise ValueError("data.kind is 'huggingface' but data.hub_name is empty")
        # datasets honours HF_HUB_OFFLINE itself: offline, only the local cache is read.
        return datasets.load_dataset(data.hub_name, data.hub_config, split=data.hub_split)
    if not data.path:
        raise ValueError(f"data.kind is {data.kind!r} but data.path is empty")
    path = Path(data.path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if data.kind == DIRECTORY_KIND:
        return _directory_rows(path)
    if data.kind == "project_csv":
        return _csv_rows(path)
    if data.kind == "project_json":
        return _from_records(json.loads(path.read_text(encoding="utf-8-sig")), path)
    if data.kind == "project_jsonl":
        text = path.read_text(encoding="utf-8-sig")
        # Split on "\n" only: JSON allows U+2028 inside strings, which splitlines() would break on.
        return _from_records([json.loads(line) for line in text.split("\n") if line.strip()], path)
    if data.kind == "project_parquet":
        import pyarrow.parquet as pq

        return datasets.Dataset(InMemoryTable(pq.read_table(path)))
    raise ValueError(f"unknown data.kind {data.kind!r}; expected one of {', '.join((*FILE_KINDS, DIRECTORY_KIND, HUB_KIND))}")


def _csv_rows(path: Path) -> datasets.Dataset:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long cells are valid data, not an error
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""), strict=True)
    header = next((row for row in reader if row), None)
    if header is None:
        raise ValueError(f"{path} is empty")
    columns: dict[str, list[str]] = {name: [] for name in header}
    for fields in reader:
        if not fields:  # csv yields [] for blank lines
            continue
        if len(fields) != len(header):
            raise ValueError(f"{path} line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
        for name, value in zip(header, fields):
            columns[name].append(value)
    return datasets.Dataset.from_dict(columns)


def _from_records(records: Any, path: Path) -> datasets.Dataset:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path} must hold JSON objects, one per row")
    # from_list takes its columns from the first row only; rows may lack keys others have.
    keys = list(dict.fromkeys(key for record in records for key in record))
    return datasets.Dataset.from_list([{key: record.get(key) for key in keys} for record in records])


def _directory_rows(path: Path) -> datasets.Dataset:
    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    loaded = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise ValueError(f"{path} holds no splits")
        # Same choice as ftapp's preview: the train split, else the first one.
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded.with_format(None)
