"""What a validation pass learns about a dataset's rows: columns, feature kinds, the DS-006 size check."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ftapp import rules
from ftapp.datasets.readers import Problems

MAX_FIELD_CHARS = 1_000_000
SAMPLE_ROWS = 20


@dataclass(frozen=True)
class DatasetTable:
    """What a full validation pass learned about a dataset."""

    columns: list[str]
    features: dict[str, str]  # column -> string|int|float|bool|list|object|null|mixed
    num_rows: int
    sample_rows: list[dict]  # the first SAMPLE_ROWS rows, for format detection


class TableBuilder:
    """Accumulates columns, feature kinds, the row count and the sample, checking DS-006 on the way."""

    def __init__(self, problems: Problems) -> None:
        self._problems = problems
        self._kinds: dict[str, set[str]] = {}  # insertion order = first-seen column order
        self._num_rows = 0
        self._sample: list[dict] = []

    def add(self, row_no: int, line_no: int | None, row: dict) -> None:
        where = f"row {row_no}" if line_no is None else f"row {row_no} (line {line_no})"
        for column, value in row.items():
            kinds = self._kinds.get(column)
            if kinds is None:
                kinds = self._kinds[column] = set()
                if not str(column).strip():
                    self._problems.add(rules.DATASET_TABLE, f"{where}: a key is empty; every column needs a name")
            kinds.add(_kind_of(value))
            size = _text_size(value)
            if size > MAX_FIELD_CHARS:
                self._problems.add(
                    rules.DATASET_VALUE_SIZE,
                    f"{where}, column '{column}': the value has {size:,} characters; the limit is {MAX_FIELD_CHARS:,}",
                )
        self._num_rows += 1
        if len(self._sample) < SAMPLE_ROWS:
            self._sample.append(row)

    def build(self) -> DatasetTable:
        return DatasetTable(
            columns=list(self._kinds),
            features={column: _merge_kinds(kinds) for column, kinds in self._kinds.items()},
            num_rows=self._num_rows,
            sample_rows=list(self._sample),
        )


def infer_features(rows: Iterable[dict]) -> dict[str, str]:
    """The ``DatasetTable.features`` vocabulary for ``rows`` whose source declares no types."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for column, value in row.items():
            kinds.setdefault(column, set()).add(_kind_of(value))
    return {column: _merge_kinds(found) for column, found in kinds.items()}


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object"  # dicts, and Arrow values with no JSON counterpart (timestamps, bytes, decimals)


def _merge_kinds(kinds: set[str]) -> str:
    """One feature per column: nulls are gaps, not a type; ints among floats are floats."""
    present = kinds - {"null"}
    if not present:
        return "null"
    if present == {"int", "float"}:
        return "float"
    if len(present) == 1:
        return next(iter(present))
    return "mixed"


def _text_size(value: object) -> int:
    """Characters a value brings into a prompt: a list/object cell counts all strings inside it."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(item) for item in value)
    return 0
