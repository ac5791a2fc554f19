"""Reading and validating local dataset files (CSV, JSON, JSONL, Parquet) and dataset directories.

The public entry points and the dispatch by dataset type live here; the per-format readers are in
``ftapp.datasets.readers`` and the table summary (columns, features, DS-006) in
``ftapp.datasets.features``.

Rows keep the types of their source: JSON values stay JSON values, CSV values are always strings
(empty cells are ``""``; no number guessing, so ``"007"`` survives), Parquet and ``datasets`` values
are what ``to_pylist`` gives. JSON/JSONL records are returned as stored: one may lack keys another
has; ``DatasetTable.columns`` is the union of keys in first-seen order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from ftapp import rules
from ftapp.datasets.features import MAX_FIELD_CHARS, SAMPLE_ROWS, DatasetTable, TableBuilder, infer_features
from ftapp.datasets.readers import (
    MAX_REPORTED_PROBLEMS,
    Problems,
    Record,
    csv_records,
    directory_records,
    json_records,
    jsonl_records,
    parquet_records,
    read_text,
)
from ftapp.errors import Problem, ValidationError

__all__ = [
    "DATASET_TYPES",
    "DIRECTORY_TYPE",
    "FILE_TYPES",
    "HUB_TYPE",
    "MAX_FIELD_CHARS",
    "MAX_REPORTED_PROBLEMS",
    "SAMPLE_ROWS",
    "TYPE_LABELS",
    "DatasetTable",
    "dataset_type_for",
    "infer_features",
    "inspect_directory",
    "inspect_file",
    "iter_rows",
    "read_directory_rows",
    "read_rows",
    "type_label",
    "accepted_files",
]

FILE_TYPES: dict[str, str] = {
    ".csv": "project_csv",
    ".json": "project_json",
    ".jsonl": "project_jsonl",
    ".parquet": "project_parquet",
}
DIRECTORY_TYPE = "project"
HUB_TYPE = "huggingface"
DATASET_TYPES = (HUB_TYPE, DIRECTORY_TYPE, *FILE_TYPES.values())
# The types in a user's words, for tables and messages; the ids above stay what the CLI's --type and the database take.
TYPE_LABELS: dict[str, str] = {
    HUB_TYPE: "Hugging Face",
    DIRECTORY_TYPE: "Dataset folder",
    "project_csv": "CSV",
    "project_json": "JSON",
    "project_jsonl": "JSON lines",
    "project_parquet": "Parquet",
}

_EXTENSION_FOR_TYPE = {dataset_type: ext for ext, dataset_type in FILE_TYPES.items()}


def type_label(dataset_type: str) -> str:
    """A dataset type as a user would name it; an unknown one (an old import's) as it is stored."""
    return TYPE_LABELS.get(dataset_type, dataset_type)


def accepted_files() -> str:
    """The file types an upload may be, in words: "CSV, JSON, JSON lines or Parquet (.csv, .json, .jsonl, .parquet)"."""
    words = [TYPE_LABELS[t] for t in FILE_TYPES.values()]
    return f"{', '.join(words[:-1])} or {words[-1]} ({', '.join(FILE_TYPES)})"


def dataset_type_for(path: Path) -> str:
    """The dataset type a location implies: ``project`` for a directory, else by file extension."""
    path = Path(path)
    if path.is_dir():
        return DIRECTORY_TYPE
    dataset_type = FILE_TYPES.get(path.suffix.lower())
    if dataset_type is None:
        supported = ", ".join(FILE_TYPES)
        raise ValidationError(
            Problem(
                rules.DATASET_LOCATION, f"'{path.name}': unsupported file extension '{path.suffix}'; use one of {supported}", "location"
            )
        )
    return dataset_type


def inspect_file(path: Path, dataset_type: str) -> DatasetTable:
    """Validate the whole dataset at ``path`` and describe it; raises ``ValidationError``.

    ``dataset_type`` ``project`` is accepted too and reads a directory like ``inspect_directory``.
    """
    path = Path(path)
    _check_type(dataset_type)
    _check_location(path, dataset_type)
    problems = Problems()
    table = TableBuilder(problems)
    for row_no, line_no, row in _open_records(path, dataset_type, problems):
        table.add(row_no, line_no, row)
    problems.raise_if_any()
    return table.build()


def read_rows(path: Path, dataset_type: str, offset: int = 0, limit: int = 20) -> list[dict]:
    """Rows ``offset`` .. ``offset + limit - 1`` (0-based), for previews.

    Reads only as far as the page ends (a JSON array is parsed whole), so faults past the page go
    unnoticed here; ``inspect_file`` is the full check.
    """
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    path = Path(path)
    _check_type(dataset_type)
    _check_location(path, dataset_type)
    problems = Problems()
    records = _open_records(path, dataset_type, problems, skip=offset)
    rows = [row for _, _, row in itertools.islice(records, limit)]
    problems.raise_if_any()
    return rows


def iter_rows(path: Path, dataset_type: str) -> Iterator[dict]:
    """Every row, streamed, for checks that need all of them after ``inspect_file`` passed."""
    path = Path(path)
    _check_type(dataset_type)
    _check_location(path, dataset_type)
    problems = Problems()
    for _, _, row in _open_records(path, dataset_type, problems):
        yield row
    problems.raise_if_any()


def inspect_directory(path: Path) -> DatasetTable:
    """Validate a type ``project`` directory: a ``save_to_disk`` output (a DatasetDict contributes
    its ``train`` split, else its first) or a folder of data files ``datasets.load_dataset`` reads."""
    return inspect_file(path, DIRECTORY_TYPE)


def read_directory_rows(path: Path, offset: int = 0, limit: int = 20) -> list[dict]:
    """A page of rows of a type ``project`` directory (see ``inspect_directory``)."""
    return read_rows(path, DIRECTORY_TYPE, offset, limit)


# --- type and location --------------------------------------------------------------------------


def _check_type(dataset_type: str) -> None:
    if dataset_type == HUB_TYPE:
        # A caller bug rather than a user error: Hub datasets have no local path to read.
        raise ValueError("'huggingface' datasets are read with ftapp.datasets.hub, not from a local path")
    if dataset_type not in DATASET_TYPES:
        raise ValidationError(
            Problem(rules.DATASET_TYPE, f"unknown dataset type '{dataset_type}'; use one of {', '.join(DATASET_TYPES)}", "type")
        )


def _check_location(path: Path, dataset_type: str) -> None:
    def reject(message: str) -> NoReturn:
        raise ValidationError(Problem(rules.DATASET_LOCATION, message, "location"))

    if not path.exists():
        reject(f"'{path}' does not exist")
    if dataset_type == DIRECTORY_TYPE:
        if not path.is_dir():
            reject(
                f"'{path}' is a file, but type 'project' needs a directory (a datasets save_to_disk "
                "output or a folder of data files); pick the type matching the file's extension"
            )
        return
    if path.is_dir():
        reject(f"'{path}' is a directory; use type 'project' for a dataset directory")
    if not path.is_file():
        reject(f"'{path}' is not a regular file")
    expected = _EXTENSION_FOR_TYPE[dataset_type]
    if path.suffix.lower() != expected:
        reject(f"'{path.name}' has extension '{path.suffix}', but type {dataset_type} needs '{expected}'")


# --- record streams -----------------------------------------------------------------------------


def _open_records(path: Path, dataset_type: str, problems: Problems, skip: int = 0) -> Iterator[Record]:
    """The records of ``path`` after the first ``skip``; fatal faults raise while iterating."""
    if dataset_type == "project_parquet":
        return parquet_records(path, problems, skip)
    if dataset_type == DIRECTORY_TYPE:
        return directory_records(path, problems, skip)
    text_reader = {"project_csv": csv_records, "project_json": json_records, "project_jsonl": jsonl_records}
    text = read_text(path, problems)
    return itertools.islice(text_reader[dataset_type](text, problems), skip, None)
